-- The retention sweep deletes read notifications by their age (`created_at`); the index of the
-- first notifications migration was on `read_at` and could not serve it.
drop index notifications_read_idx;
create index notifications_read_created_idx on notifications (created_at) where read_at is not null;
