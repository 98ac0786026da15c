-- Notifications: a user's in-app inbox. Ids are UUIDv7, so "newest first" is "id descending".
create table notifications (
    id         uuid primary key,
    user_id    uuid not null references users (id) on delete cascade,
    kind       text not null,
    title      text not null,
    body       text,
    link       text,
    data       jsonb,
    created_at timestamptz not null default now(),
    read_at    timestamptz
);

-- this user's newest first, and this user's unread newest first
create index notifications_user_idx on notifications (user_id, id desc);
create index notifications_unread_idx on notifications (user_id, id desc) where read_at is null;
-- retention: read ones past notifications.retention_days
create index notifications_read_idx on notifications (read_at) where read_at is not null;

-- every instance listens on one connection and hands each new notification to its user's streams
create function notifications_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('notifications', new.user_id::text || ' ' || new.id::text);
    return null;
end $$;

create trigger notifications_inserted after insert on notifications
    for each row execute function notifications_notify();

-- Role-change requests: at most one pending per user.
create table role_requests (
    id             uuid primary key,
    user_id        uuid not null references users (id) on delete cascade,
    -- the role when the user asked (`current_role` in the API; a reserved word in SQL)
    from_role      text not null,
    requested_role text not null,
    reason         text not null,
    status         text not null default 'pending',
    created_at     timestamptz not null default now(),
    decided_at     timestamptz,
    decided_by     uuid,
    comment        text,
    constraint role_requests_status_check
        check (status in ('pending', 'approved', 'rejected', 'cancelled'))
);

create unique index role_requests_one_pending_idx on role_requests (user_id) where status = 'pending';
create index role_requests_user_idx on role_requests (user_id, id desc);
create index role_requests_status_idx on role_requests (status, id desc);
