-- Each user's inbox version: bumped by every statement that adds, changes or deletes any of the
-- user's notifications, in that statement's transaction. An instance keeps the first pages of the
-- inbox it has answered, each with the version it was read at, and answers one again only after
-- reading the version anew (one row, batched like the session check) and finding it unchanged;
-- so a change committed on any instance is seen by the next request, as without the copy.
create table notification_inboxes (
    user_id uuid primary key references users (id) on delete cascade,
    version bigint not null
);

insert into notification_inboxes (user_id, version)
select distinct user_id, 1 from notifications;

-- New notifications: their users' rows are made or bumped in user order, so two statements that
-- notify the same users (every admin) lock them in the same order and never deadlock.
create function notification_inboxes_added() returns trigger language plpgsql as $$
begin
    insert into notification_inboxes (user_id, version)
    select distinct user_id, 1 from added order by user_id
    on conflict (user_id) do update set version = notification_inboxes.version + 1;
    return null;
end
$$;

-- Read or deleted ones: the rows exist (every insert made one); a user being deleted has lost
-- his already, and there is nothing to bump. Locked in user order, as above.
create function notification_inboxes_changed() returns trigger language plpgsql as $$
begin
    with locked as (
        select i.user_id from notification_inboxes i
        where i.user_id in (select distinct user_id from changed)
        order by i.user_id
        for no key update
    )
    update notification_inboxes i set version = i.version + 1
    from locked where i.user_id = locked.user_id;
    return null;
end
$$;

create trigger notification_inboxes_added after insert on notifications
    referencing new table as added
    for each statement execute function notification_inboxes_added();
create trigger notification_inboxes_updated after update on notifications
    referencing new table as changed
    for each statement execute function notification_inboxes_changed();
create trigger notification_inboxes_deleted after delete on notifications
    referencing old table as changed
    for each statement execute function notification_inboxes_changed();
