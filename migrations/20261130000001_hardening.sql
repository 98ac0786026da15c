-- Who soft-deleted an account: its owner may restore it through the public route; an account an
-- admin or a server deleted stays deleted there.
alter table users add column deleted_by_owner boolean not null default false;

-- Telegram Login Widget payloads already used, by SHA-256 of their hash; kept until the payload
-- would be stale anyway, then purged.
create table telegram_logins (
    hash_digest bytea primary key,
    expires_at  timestamptz not null,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

-- The purge job deletes what has expired: these let it find it without a scan.
create index telegram_logins_expires_at_idx on telegram_logins (expires_at);
create index sessions_expires_at_idx on sessions (expires_at);
create index login_throttle_window_idx on login_throttle (window_started_at);
create index oauth_states_expires_at_idx on oauth_states (expires_at);
create index password_reset_tokens_expires_at_idx on password_reset_tokens (expires_at);
