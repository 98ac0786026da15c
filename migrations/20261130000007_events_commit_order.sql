-- Events in commit order. The first events migration ordered them by the writing transaction's
-- id, which is given at the transaction's first write, not at its commit: a transaction that
-- started earlier but committed later sorted first (a role change decided after a profile edit
-- was published before it, carrying the older user). Now each event gets its place when its
-- transaction commits: a deferred trigger, run at commit, takes a transaction-scoped lock and
-- numbers the transaction's events from one sequence. The lock is held until the commit ends, so
-- a number is visible only after every smaller one is committed (or rolled back, leaving a gap):
-- readers page by `commit_seq` alone, and a long-open transaction holds nothing back.
create sequence events_commit_seq;
alter table events add column commit_seq bigint;
with ordered as (select id, row_number() over (order by txid, seq) as n from events)
update events e set commit_seq = ordered.n from ordered where e.id = ordered.id;
select setval('events_commit_seq', coalesce(max(commit_seq), 0) + 1, false) from events;

-- `txid` and its index stay for one release: pods of the previous version, still running while a
-- rolling deploy replaces them after this migration, read events by it. A later migration drops
-- them.
drop index events_unpublished_idx;
create unique index events_commit_idx on events (commit_seq);
create index events_unpublished_idx on events (commit_seq) where published_at is null;

create function events_commit_order() returns trigger language plpgsql as $$
begin
    -- 'user_evs': one writer at a time from here to its commit's end
    perform pg_advisory_xact_lock(8463219666660456051);
    update events set commit_seq = nextval('events_commit_seq') where id = new.id;
    return null;
end $$;

create constraint trigger events_commit_order after insert on events
    deferrable initially deferred
    for each row execute function events_commit_order();
