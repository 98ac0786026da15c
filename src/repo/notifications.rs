//! The `notifications` inbox.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};

use uuid::Uuid;

use super::batch::{sizes, values_list, BatchRead, Batcher};

/// The channel every insert notifies (payload `<user id> <notification id>`).
pub const CHANNEL: &str = "notifications";

#[derive(Debug, Clone, FromRow)]
pub struct NotificationRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: String,
    pub title: String,
    pub body: Option<String>,
    pub link: Option<String>,
    pub data: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, user_id, kind, title, body, link, data, created_at, read_at";

pub struct NewNotification<'a> {
    pub user_id: Uuid,
    pub kind: &'a str,
    pub title: &'a str,
    pub body: Option<&'a str>,
    pub link: Option<&'a str>,
    pub data: Option<&'a Value>,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    n: &NewNotification<'_>,
) -> sqlx::Result<NotificationRow> {
    crate::telemetry::db_span("notifications.insert", async move {
        super::db::query_as(&format!(
            "insert into notifications (id, user_id, kind, title, body, link, data)
             values ($1, $2, $3, $4, $5, $6, $7) returning {COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(n.user_id)
        .bind(n.kind)
        .bind(n.title)
        .bind(n.body)
        .bind(n.link)
        .bind(n.data)
        .fetch_one(db)
        .await
    })
    .await
}

/// `n` for each of several users (every active admin) in one statement; `n.user_id` is not used.
pub async fn insert_many(
    db: impl PgExecutor<'_>,
    user_ids: &[Uuid],
    n: &NewNotification<'_>,
) -> sqlx::Result<u64> {
    crate::telemetry::db_span("notifications.insert_many", async move {
        let ids: Vec<Uuid> = user_ids.iter().map(|_| Uuid::now_v7()).collect();
        let done = super::db::query(
            "insert into notifications (id, user_id, kind, title, body, link, data)
             select n.id, n.user_id, $3, $4, $5, $6, $7
             from unnest($1::uuid[], $2::uuid[]) as n (id, user_id)",
        )
        .bind(&ids)
        .bind(user_ids)
        .bind(n.kind)
        .bind(n.title)
        .bind(n.body)
        .bind(n.link)
        .bind(n.data)
        .execute(db)
        .await?;
        Ok(done.rows_affected())
    })
    .await
}

/// All the user's notifications, newest first (the export; the inbox reads `Pages`).
pub async fn all_of(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<NotificationRow>> {
    crate::telemetry::db_span("notifications.all_of", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from notifications where user_id = $1 order by id desc"
        ))
        .bind(user_id)
        .fetch_all(db)
        .await
    })
    .await
}

/// One inbox page to read: the user's notifications (all, or unread only) before `before` (none:
/// from the newest), newest first, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub user_id: Uuid,
    pub unread_only: bool,
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// Inbox pages, read for many requests in one query (see `batch`): opening the inbox is the
/// second most frequent private request after the session check it comes with.
pub struct Pages;

/// The handle the inbox reads its pages with (every page asked for is answered, empty or not).
pub type PageReads = Batcher<Pages>;

/// Most pages one query reads.
const MAX_PAGES: usize = 64;
// a batch of n pages runs the statement for the next power of two (see `sizes`)
const _: () = assert!(MAX_PAGES.is_power_of_two());

impl BatchRead for Pages {
    type Key = PageKey;
    type Value = Vec<NotificationRow>;
    const MAX_BATCH: usize = MAX_PAGES;
    const NAME: &'static str = "notifications.page";

    /// Every page of the batch in one statement: a `values` list padded with nulls to the next
    /// power of two (one generic plan per size, as `sessions::states`), each row an index scan of
    /// its user's newest notifications — all of them, or (the other branch, on the partial index)
    /// the unread ones. Rows are put back on their pages by `ord`.
    #[tracing::instrument(level = "trace", skip_all, fields(db.system = "postgresql"))]
    async fn fetch(
        conn: &mut PgConnection,
        keys: &[PageKey],
    ) -> sqlx::Result<Vec<(PageKey, Self::Value)>> {
        let size = keys.len().next_power_of_two();
        let mut query = super::db::query_as::<PagedRow>(&PAGES_SQL[size.trailing_zeros() as usize]);
        for slot in 0..size {
            let key = keys.get(slot);
            query = query
                .bind(key.map(|_| slot as i32))
                .bind(key.map(|k| k.user_id))
                .bind(key.map(|k| k.before.unwrap_or(Uuid::max())))
                .bind(key.map(|k| k.limit))
                .bind(key.map(|k| k.unread_only));
        }
        let mut pages: Vec<(PageKey, Self::Value)> =
            keys.iter().map(|k| (k.clone(), Vec::new())).collect();
        for row in query.fetch_all(conn).await? {
            if let Some(page) = usize::try_from(row.ord).ok().and_then(|i| pages.get_mut(i)) {
                page.1.push(row.row);
            }
        }
        // each page newest first here, not by an `order by` over the whole batch (a sort of every
        // row in PostgreSQL; the rows come in that order already)
        for (_, page) in &mut pages {
            page.sort_unstable_by_key(|row| std::cmp::Reverse(row.id));
        }
        Ok(pages)
    }
}

#[derive(FromRow)]
struct PagedRow {
    /// the page's place in the batch
    ord: i32,
    #[sqlx(flatten)]
    row: NotificationRow,
}

/// The `Pages::fetch` statements for 1, 2, 4, … `MAX_PAGES` pages.
static PAGES_SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
    sizes(MAX_PAGES)
        .map(|size| {
            format!(
                "select q.ord, n.* from (values {}) as q (ord, user_id, before, lim, unread)
                 cross join lateral (
                     (select {COLUMNS} from notifications
                      where not q.unread and user_id = q.user_id and id < q.before
                      order by id desc limit q.lim)
                     union all
                     (select {COLUMNS} from notifications
                      where q.unread and user_id = q.user_id and read_at is null and id < q.before
                      order by id desc limit q.lim)
                 ) n",
                values_list(size, &["int4", "uuid", "uuid", "int8", "bool"])
            )
        })
        .collect()
});

/// Inbox versions (`notification_inboxes`), read for many requests in one query: every inbox
/// page the service has kept is answered again only after its user's version is read anew.
pub struct Versions;

/// The handle the inbox reads versions with (a user who was never notified has none: 0).
pub type VersionReads = Batcher<Versions>;

impl BatchRead for Versions {
    type Key = Uuid;
    type Value = i64;
    const MAX_BATCH: usize = MAX_PAGES;
    const NAME: &'static str = "notifications.version";

    /// One primary-key lookup per user, the ids padded as `Pages::fetch` pads its keys.
    #[tracing::instrument(level = "trace", skip_all, fields(db.system = "postgresql"))]
    async fn fetch(conn: &mut PgConnection, keys: &[Uuid]) -> sqlx::Result<Vec<(Uuid, i64)>> {
        let size = keys.len().next_power_of_two();
        let mut query =
            super::db::query_as::<(Uuid, i64)>(&VERSIONS_SQL[size.trailing_zeros() as usize]);
        for slot in 0..size {
            query = query.bind(keys.get(slot).copied());
        }
        query.fetch_all(conn).await
    }
}

/// The `Versions::fetch` statements for 1, 2, 4, … `MAX_PAGES` users.
static VERSIONS_SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
    sizes(MAX_PAGES)
        .map(|size| {
            format!(
                "select i.user_id, i.version from (values {}) as q (user_id)
                 join notification_inboxes i on i.user_id = q.user_id",
                values_list(size, &["uuid"])
            )
        })
        .collect()
});

/// The user's notifications created after `after`, oldest first (a stream's replay).
pub async fn after(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    after: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<NotificationRow>> {
    crate::telemetry::db_span("notifications.after", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from notifications where user_id = $1 and id > $2 order by id limit $3"
        ))
        .bind(user_id)
        .bind(after)
        .bind(limit)
        .fetch_all(db)
        .await
    })
    .await
}

/// These notifications (those that still exist), oldest first: what a stream's instance hands
/// to its streams, read once however many streams each has.
pub async fn by_ids(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<NotificationRow>> {
    crate::telemetry::db_span("notifications.by_ids", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from notifications where id = any($1) order by id"
        ))
        .bind(ids)
        .fetch_all(db)
        .await
    })
    .await
}

pub async fn unread_count(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    crate::telemetry::db_span("notifications.unread_count", async move {
        super::db::query_scalar(
            "select count(*) from notifications where user_id = $1 and read_at is null",
        )
        .bind(user_id)
        .fetch_one(db)
        .await
    })
    .await
}

/// Marks one read (keeping an earlier time); none when unknown or another user's.
pub async fn mark_read(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<NotificationRow>> {
    crate::telemetry::db_span("notifications.mark_read", async move {
        super::db::query_as(&format!(
            "update notifications set read_at = coalesce(read_at, now())
             where id = $1 and user_id = $2 returning {COLUMNS}"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(db)
        .await
    })
    .await
}

pub async fn mark_all_read(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<u64> {
    crate::telemetry::db_span("notifications.mark_all_read", async move {
        let done = super::db::query(
            "update notifications set read_at = now() where user_id = $1 and read_at is null",
        )
        .bind(user_id)
        .execute(db)
        .await?;
        Ok(done.rows_affected())
    })
    .await
}

pub async fn delete_own(db: impl PgExecutor<'_>, user_id: Uuid, id: Uuid) -> sqlx::Result<bool> {
    crate::telemetry::db_span("notifications.delete_own", async move {
        let done = super::db::query("delete from notifications where id = $1 and user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(db)
            .await?;
        Ok(done.rows_affected() == 1)
    })
    .await
}

/// Deletes read notifications older than the retention.
pub async fn delete_read_before(db: impl PgExecutor<'_>, days: i32) -> sqlx::Result<u64> {
    crate::telemetry::db_span("notifications.delete_read_before", async move {
        let done = super::db::query(
            "delete from notifications
             where read_at is not null and created_at < now() - make_interval(days => $1)",
        )
        .bind(days)
        .execute(db)
        .await?;
        Ok(done.rows_affected())
    })
    .await
}
