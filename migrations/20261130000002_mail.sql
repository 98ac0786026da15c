-- Mail: whether the account's address is proven, the outbox the courier sends from, and
-- verification tokens.

alter table users add column email_verified boolean not null default false;

-- One message per mail, written in the transaction of the change that causes it. The body is
-- erased once sent (it may hold a live token); the metadata stays for email.retention_days.
create table messages (
    id              uuid primary key,
    kind            text not null,
    -- null once the user is permanently deleted: the record of what was sent outlives them
    user_id         uuid references users (id) on delete set null,
    recipient       text not null,
    subject         text not null,
    body_text       text,
    body_html       text,
    -- the Message-ID header, the same on every attempt
    message_id      text not null,
    status          text not null default 'queued',
    attempts        integer not null default 0,
    -- when a queued message is due: now for a new one, later after a failure, or the end of the
    -- lease a courier took when it claimed it (so a crash mid-send re-sends it later)
    next_attempt_at timestamptz not null default now(),
    last_error      text,
    sent_at         timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint messages_status_check check (status in ('queued', 'sent', 'abandoned'))
);

create index messages_due_idx on messages (next_attempt_at) where status = 'queued';
create index messages_user_idx on messages (user_id, kind, created_at desc);
create index messages_created_idx on messages (created_at);

-- Email verification tokens: stored as SHA-256, single use, bound to the address they were sent to.
create table email_verification_tokens (
    token_hash bytea primary key,
    user_id    uuid not null references users (id) on delete cascade,
    email      text not null,
    expires_at timestamptz not null,
    used_at    timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create index email_verification_tokens_user_idx on email_verification_tokens (user_id);
create index email_verification_tokens_expires_idx on email_verification_tokens (expires_at);
