-- Events for other services (a transactional outbox): written in the transaction of the change,
-- published to RabbitMQ by one relay at a time, readable over the server feed.
--
-- Order: `txid` is the writing transaction's id and `seq` the order of writing. Readers (the relay,
-- the feed) take only events of transactions older than every one still running
-- (`txid < pg_snapshot_xmin(pg_current_snapshot())`), in (txid, seq) order: an event that commits
-- later can then never sort before one already read, so paging by the last event read skips none.
create table events (
    seq          bigint generated always as identity,
    id           uuid primary key,
    txid         xid8 not null default pg_current_xact_id(),
    type         text not null,
    occurred_at  timestamptz not null default now(),
    actor        text not null,
    user_id      uuid,
    data         jsonb not null,
    published_at timestamptz
);

create unique index events_order_idx on events (txid, seq);
create index events_unpublished_idx on events (txid, seq) where published_at is null;
create index events_occurred_idx on events (occurred_at);

-- wakes the relay when events commit (the relay also polls)
create function events_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('events_inserted', '');
    return null;
end $$;

create trigger events_inserted after insert on events
    for each statement execute function events_notify();
