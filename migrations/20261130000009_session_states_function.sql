-- Behind PgBouncer in transaction mode (`database.pgbouncer`) no statement of the service is
-- prepared: each is parsed and planned on every call. The session check runs for every private
-- request, and planning its join cost more than running it; as a PL/pgSQL function its plan is
-- made once per server connection and kept (a generic plan: with a custom one per call the array
-- of ids would be re-planned every time). The same query as `repo::sessions::states` (direct
-- connections keep that one prepared); its columns are `SessionState`'s.
create function session_states(ids uuid[])
returns table (
    session_id uuid, live boolean, stale_last_seen boolean, signed_in_at timestamptz, amr text[],
    id uuid, email text, phone text, password_hash text, first_name text, last_name text,
    middle_name text, role text, status text, created_at timestamptz, updated_at timestamptz,
    deleted_at timestamptz, deleted_by_owner boolean, email_verified boolean, mfa_enabled boolean,
    links json
)
language plpgsql stable
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
begin
    return query
    select s.id, s.revoked_at is null and s.expires_at > now() and u.status = 'active',
           s.last_seen_at < now() - interval '60 seconds', s.created_at, s.amr,
           u.id, u.email, u.phone, u.password_hash, u.first_name, u.last_name, u.middle_name,
           u.role, u.status, u.created_at, u.updated_at, u.deleted_at, u.deleted_by_owner,
           u.email_verified, u.mfa_enabled,
           coalesce((select json_agg(l order by l.connected_at, l.id) from linked_accounts l
                     where l.user_id = u.id), '[]')
    from sessions s
    join users u on u.id = s.user_id
    where s.id = any(ids);
end $$;
