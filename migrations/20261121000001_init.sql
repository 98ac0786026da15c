-- Roles are data, not an enum: the three the contract names are seeded here.
create table roles (
    name        text primary key,
    description text not null,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

insert into roles (name, description) values
    ('admin', 'manages users, roles and sessions'),
    ('methodist', 'regular staff account'),
    ('readonly', 'may only read')
on conflict (name) do nothing;

create table users (
    id            uuid primary key,
    email         text not null,
    phone         text,
    -- null for accounts without a password (created by a server, or signed in through a provider)
    password_hash text,
    first_name    text not null,
    last_name     text,
    middle_name   text,
    role          text not null references roles (name),
    status        text not null default 'active',
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    deleted_at    timestamptz,
    constraint users_status_check check (status in ('active', 'deleted')),
    constraint users_deleted_at_check check ((status = 'deleted') = (deleted_at is not null))
);

-- Email is unique case-insensitively across every user that exists, soft-deleted included.
create unique index users_email_key on users (lower(email));
create unique index users_phone_key on users (phone);

create table sessions (
    id                    uuid primary key,
    user_id               uuid not null references users (id) on delete cascade,
    -- SHA-256 of the current refresh token; the token itself is never stored
    refresh_hash          bytea not null,
    -- the token it replaced, honoured for auth.refresh_reuse_grace_secs after rotated_at
    previous_refresh_hash bytea,
    rotated_at            timestamptz,
    user_agent            text,
    ip                    text,
    created_at            timestamptz not null default now(),
    updated_at            timestamptz not null default now(),
    last_seen_at          timestamptz not null default now(),
    expires_at            timestamptz not null,
    revoked_at            timestamptz
);

create index sessions_user_id_live_idx on sessions (user_id, created_at desc) where revoked_at is null;

-- Failed logins are counted per email (known or not, so the lockout reveals nothing) and shared by every
-- instance through the database.
create table login_throttle (
    email_key         text primary key,
    failures          integer not null,
    window_started_at timestamptz not null,
    locked_until      timestamptz,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now()
);

create table password_reset_tokens (
    -- SHA-256 of the token; the token itself is only ever given to the caller
    token_hash bytea primary key,
    user_id    uuid not null references users (id) on delete cascade,
    expires_at timestamptz not null,
    used_at    timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create index password_reset_tokens_user_id_idx on password_reset_tokens (user_id);

-- The access-token signing key, generated once so that restarts and several instances agree.
create table signing_keys (
    kid         text primary key,
    private_der bytea not null,
    public_key  bytea not null,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);
