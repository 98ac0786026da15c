create table linked_accounts (
    id              uuid primary key,
    user_id         uuid not null references users (id) on delete cascade,
    social_network  text not null,
    connection_link text not null,
    connected_for   text,
    -- the provider's id for identities that sign in (Yandex, Telegram); null for links added by hand
    external_id     text,
    connected_at    timestamptz not null default now(),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint linked_accounts_network_check
        check (social_network in ('vk', 'telegram', 'yandex', 'github', 'ok'))
);

-- A page can be linked once (by anyone); an identity signs in to one user only.
create unique index linked_accounts_link_key on linked_accounts (social_network, lower(connection_link))
    where external_id is null;
create unique index linked_accounts_external_key on linked_accounts (social_network, external_id)
    where external_id is not null;
create index linked_accounts_user_id_idx on linked_accounts (user_id, connected_at);

-- In-flight OAuth authorizations: single use, expiring, bound to the browser that started them.
create table oauth_states (
    state_hash    bytea primary key,
    provider      text not null,
    code_verifier text not null,
    redirect_to   text not null,
    browser_hash  bytea not null,
    link_user_id  uuid references users (id) on delete cascade,
    expires_at    timestamptz not null,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
