-- Passkeys (WebAuthn): a user's discoverable credentials, and the ceremonies under way.

-- The opaque user handle authenticators store as `user.id`: random, made at a user's first passkey
-- registration; it reveals neither the user id nor the email.
alter table users add column webauthn_handle bytea unique;

create table passkeys (
    id            uuid primary key,
    user_id       uuid not null references users (id) on delete cascade,
    -- the credential id the authenticator chose (unique across users: a credential is registered once)
    credential_id bytea not null unique,
    -- the verified credential as webauthn-rs-core keeps it: public key, signature counter, flags.
    -- A public key is no secret.
    credential    jsonb not null,
    name          text not null,
    created_at    timestamptz not null default now(),
    last_used_at  timestamptz,
    -- its signature counter went back: possibly a cloned authenticator. Refused at sign-in until the
    -- user registers it again.
    suspended_at  timestamptz
);

create index passkeys_user_idx on passkeys (user_id, created_at desc);

-- A started ceremony: single use, 300 s. Registration belongs to its user; a sign-in to nobody yet.
create table webauthn_challenges (
    id         uuid primary key,
    user_id    uuid references users (id) on delete cascade,
    ceremony   text not null check (ceremony in ('registration', 'authentication')),
    -- webauthn-rs-core's RegistrationState or AuthenticationState (the challenge and the policy)
    state      jsonb not null,
    expires_at timestamptz not null
);

create index webauthn_challenges_expiry_idx on webauthn_challenges (expires_at);

-- the export's per-user budget counts the caller's exports of the last hour
create index audit_log_export_idx on audit_log (actor, at) where action = 'user.export';
