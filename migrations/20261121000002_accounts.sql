-- Admin search: one lowercased text of everything a search matches, indexed by trigrams so a
-- case-insensitive substring search stays fast at a million users.
create extension if not exists pg_trgm;

alter table users add column search_text text generated always as (
    lower(email || ' ' || coalesce(phone, '') || ' ' || first_name || ' ' || coalesce(last_name, '') || ' '
          || coalesce(middle_name, ''))
) stored;

create index users_search_text_trgm_idx on users using gin (search_text gin_trgm_ops);
create index users_role_idx on users (role);

-- The purge job looks only at soft-deleted users.
create index users_deleted_at_idx on users (deleted_at) where status = 'deleted';

-- One record per state change, written in the change's transaction. No foreign key on the target:
-- the record outlives a permanently deleted user.
create table audit_log (
    id             uuid primary key,
    at             timestamptz not null default now(),
    actor          text not null,
    action         text not null,
    target_user_id uuid,
    ip             text,
    details        jsonb not null default '{}',
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now()
);

create index audit_log_target_idx on audit_log (target_user_id, id desc);
create index audit_log_action_idx on audit_log (action, id desc);
