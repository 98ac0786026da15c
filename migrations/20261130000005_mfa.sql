-- Two-factor sign-in (TOTP with recovery codes), the methods each session signed in with, and
-- secrets sealed with `auth.data_key` (see src/auth/data_key.rs).

-- true from a confirmed enrolment until two-factor is turned off: read with the user at every
-- sign-in, so the first step knows whether to ask for a second without another query
alter table users add column mfa_enabled boolean not null default false;

-- the methods of the sign-in that opened the session (`amr`): kept by every refresh
alter table sessions add column amr text[] not null default '{}';

-- the id of the data key that sealed the private key; null: stored as it is
alter table signing_keys add column key_id text;

-- A user's authenticator: the secret (sealed when `auth.data_key` is set), whether the enrolment
-- is confirmed, and the last 30-second step whose code was accepted (a code is accepted once).
create table totp_factors (
    user_id      uuid primary key references users (id) on delete cascade,
    secret       bytea not null,
    key_id       text,
    confirmed_at timestamptz,
    last_step    bigint,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);

-- Ten single-use codes per user, stored as SHA-256 hashes.
create table recovery_codes (
    user_id    uuid not null references users (id) on delete cascade,
    code_hash  bytea not null,
    used_at    timestamptz,
    created_at timestamptz not null default now(),
    primary key (user_id, code_hash)
);

-- A first step that proved the first factor and waits for the second: single use, by the SHA-256
-- of its token; dead after 5 wrong codes or when it expires (the purge job deletes it then).
create table mfa_challenges (
    token_hash bytea primary key,
    user_id    uuid not null references users (id) on delete cascade,
    -- what the completion answers: login, token, restore, telegram or yandex
    form       text not null check (form in ('login', 'token', 'restore', 'telegram', 'yandex')),
    -- the first step's methods (amr)
    methods    text[] not null,
    failures   int not null default 0,
    expires_at timestamptz not null,
    used_at    timestamptz,
    created_at timestamptz not null default now()
);
create index mfa_challenges_expires_at_idx on mfa_challenges (expires_at);
create index mfa_challenges_user_id_idx on mfa_challenges (user_id);
