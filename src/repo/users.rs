//! The `users` table.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::domain::{Role, UserStatus};

/// A user as stored. Holds the password hash, so it is deliberately not `Serialize`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub phone: Option<String>,
    pub password_hash: Option<String>,
    pub first_name: String,
    pub last_name: Option<String>,
    pub middle_name: Option<String>,
    pub role: Role,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// soft-deleted by its owner (who may restore it through the public route)
    pub deleted_by_owner: bool,
    /// the address is proven (a verification link was followed, or a provider vouched for it)
    pub email_verified: bool,
    /// two-factor sign-in is on: a first step answers with a challenge instead of a session
    pub mfa_enabled: bool,
}

impl UserRow {
    pub fn is_deleted(&self) -> bool {
        self.status == UserStatus::Deleted
    }
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub phone: Option<&'a str>,
    pub password_hash: Option<&'a str>,
    pub first_name: &'a str,
    pub last_name: Option<&'a str>,
    pub middle_name: Option<&'a str>,
    pub role: Role,
    pub email_verified: bool,
}

/// (Behind PgBouncer the session check reads these from the `session_states` function: a column
/// added here goes there too, in a migration.)
const COLUMNS: &str =
    "id, email, phone, password_hash, first_name, last_name, middle_name, role, status, \
                       created_at, updated_at, deleted_at, deleted_by_owner, email_verified, \
                       mfa_enabled";

/// The user columns of `alias` (`u.id, u.email, …`) and the user's linked accounts as `links`
/// (JSON, oldest first): a `UserWithLinks`, or a `UserRow` flattened into a wider row. The links
/// subquery runs only for the rows returned (after any limit).
pub(super) fn columns_with_links(alias: &str) -> String {
    format!(
        "{}, coalesce((select json_agg(l order by l.connected_at, l.id) from linked_accounts l \
         where l.user_id = {alias}.id), '[]') as links",
        super::prefix_columns(COLUMNS, alias)
    )
}

pub async fn insert(db: impl PgExecutor<'_>, user: &NewUser<'_>) -> sqlx::Result<UserRow> {
    crate::telemetry::db_span("users.insert", async move {
        super::db::query_as(&format!(
            "insert into users (id, email, phone, password_hash, first_name, last_name, middle_name, role,
                                email_verified)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             returning {COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(user.email)
        .bind(user.phone)
        .bind(user.password_hash)
        .bind(user.first_name)
        .bind(user.last_name)
        .bind(user.middle_name)
        .bind(user.role)
        .bind(user.email_verified)
        .fetch_one(db)
        .await
    })
    .await
}

pub async fn find_by_id(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<UserRow>> {
    crate::telemetry::db_span("users.find_by_id", async move {
        super::db::query_as(&format!("select {COLUMNS} from users where id = $1"))
            .bind(id)
            .fetch_optional(db)
            .await
    })
    .await
}

/// The user with their linked accounts, in one query.
pub async fn find_with_links(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> sqlx::Result<Option<UserWithLinks>> {
    crate::telemetry::db_span("users.find_with_links", async move {
        super::db::query_as(&format!(
            "select {} from users where id = $1",
            columns_with_links("users")
        ))
        .bind(id)
        .fetch_optional(db)
        .await
    })
    .await
}

pub async fn find_by_email(db: impl PgExecutor<'_>, email: &str) -> sqlx::Result<Option<UserRow>> {
    crate::telemetry::db_span("users.find_by_email", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from users where lower(email) = lower($1)"
        ))
        .bind(email)
        .fetch_optional(db)
        .await
    })
    .await
}

pub async fn set_password_hash(db: impl PgExecutor<'_>, id: Uuid, hash: &str) -> sqlx::Result<()> {
    crate::telemetry::db_span("users.set_password_hash", async move {
        super::db::query("update users set password_hash = $2, updated_at = now() where id = $1")
            .bind(id)
            .bind(hash)
            .execute(db)
            .await?;
        Ok(())
    })
    .await
}

/// Locks the user's row for the rest of the transaction.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<UserRow>> {
    crate::telemetry::db_span("users.lock", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from users where id = $1 for update"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await
    })
    .await
}

/// Locks every active admin's row: changes that could remove the last admin serialise here.
pub async fn lock_active_admins(conn: &mut PgConnection) -> sqlx::Result<Vec<Uuid>> {
    crate::telemetry::db_span("users.lock_active_admins", async move {
        super::db::query_scalar(
            "select id from users where role = 'admin' and status = 'active' order by id for update",
        )
        .fetch_all(conn)
        .await
    })
    .await
}

/// Every active admin (those a role request notifies).
pub async fn active_admins(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Uuid>> {
    crate::telemetry::db_span("users.active_admins", async move {
        super::db::query_scalar("select id from users where role = 'admin' and status = 'active'")
            .fetch_all(db)
            .await
    })
    .await
}

/// Names to set; for the optional ones, `Some(None)` clears and `None` keeps.
pub struct NameChange<'a> {
    pub first_name: Option<&'a str>,
    pub last_name: Option<Option<&'a str>>,
    pub middle_name: Option<Option<&'a str>>,
}

pub async fn update_names(
    db: impl PgExecutor<'_>,
    id: Uuid,
    c: &NameChange<'_>,
) -> sqlx::Result<UserRow> {
    crate::telemetry::db_span("users.update_names", async move {
        super::db::query_as(&format!(
            "update users set
                 first_name = coalesce($2, first_name),
                 last_name = case when $3 then $4 else last_name end,
                 middle_name = case when $5 then $6 else middle_name end,
                 updated_at = now()
             where id = $1
             returning {COLUMNS}"
        ))
        .bind(id)
        .bind(c.first_name)
        .bind(c.last_name.is_some())
        .bind(c.last_name.flatten())
        .bind(c.middle_name.is_some())
        .bind(c.middle_name.flatten())
        .fetch_one(db)
        .await
    })
    .await
}

/// Marks the address proven, if it is still the account's address (`false` otherwise).
pub async fn verify_email(
    db: impl PgExecutor<'_>,
    id: Uuid,
    email: &str,
) -> sqlx::Result<Option<UserRow>> {
    crate::telemetry::db_span("users.verify_email", async move {
        super::db::query_as(&format!(
            "update users set email_verified = true, updated_at = now()
             where id = $1 and lower(email) = lower($2) and status = 'active'
             returning {COLUMNS}"
        ))
        .bind(id)
        .bind(email)
        .fetch_optional(db)
        .await
    })
    .await
}

/// Contacts to set; `phone: Some(None)` removes the phone. A changed email is unproven again.
pub async fn update_contacts(
    db: impl PgExecutor<'_>,
    id: Uuid,
    email: Option<&str>,
    phone: Option<Option<&str>>,
) -> sqlx::Result<UserRow> {
    crate::telemetry::db_span("users.update_contacts", async move {
        super::db::query_as(&format!(
            "update users set
                 email = coalesce($2, email),
                 email_verified = email_verified and ($2 is null or lower($2) = lower(email)),
                 phone = case when $3 then $4 else phone end,
                 updated_at = now()
             where id = $1
             returning {COLUMNS}"
        ))
        .bind(id)
        .bind(email)
        .bind(phone.is_some())
        .bind(phone.flatten())
        .fetch_one(db)
        .await
    })
    .await
}

/// Soft-deletes (`Some(by_owner)`) or restores (`None`) a user.
pub async fn set_deleted(
    db: impl PgExecutor<'_>,
    id: Uuid,
    deleted: Option<bool>,
) -> sqlx::Result<UserRow> {
    crate::telemetry::db_span("users.set_deleted", async move {
        super::db::query_as(&format!(
            "update users set
                 status = case when $2 then 'deleted' else 'active' end,
                 deleted_at = case when $2 then now() end,
                 deleted_by_owner = coalesce($3, false),
                 updated_at = now()
             where id = $1
             returning {COLUMNS}"
        ))
        .bind(id)
        .bind(deleted.is_some())
        .bind(deleted)
        .fetch_one(db)
        .await
    })
    .await
}

pub async fn set_role(db: impl PgExecutor<'_>, id: Uuid, role: Role) -> sqlx::Result<UserRow> {
    crate::telemetry::db_span("users.set_role", async move {
        super::db::query_as(&format!(
            "update users set role = $2, updated_at = now() where id = $1 returning {COLUMNS}"
        ))
        .bind(id)
        .bind(role)
        .fetch_one(db)
        .await
    })
    .await
}

/// Deletes the user; sessions, reset tokens and linked accounts go with it (foreign keys cascade).
pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    crate::telemetry::db_span("users.delete", async move {
        let done = super::db::query("delete from users where id = $1")
            .bind(id)
            .execute(db)
            .await?;
        Ok(done.rows_affected() == 1)
    })
    .await
}

/// Deletes several users in one statement (the purge).
pub async fn delete_many(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<u64> {
    crate::telemetry::db_span("users.delete_many", async move {
        let done = super::db::query("delete from users where id = any($1)")
            .bind(ids)
            .execute(db)
            .await?;
        Ok(done.rows_affected())
    })
    .await
}

/// A user and their linked accounts, read in one query.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserWithLinks {
    #[sqlx(flatten)]
    pub user: UserRow,
    #[sqlx(json)]
    pub links: Vec<super::linked_accounts::LinkedAccountRow>,
}

/// What an admin search asks for.
pub struct Search<'a> {
    /// lowercased, matched as a substring of email, phone and names
    pub query: Option<&'a str>,
    /// the part of `query` the trigram index is asked for (`search_terms::SearchTerms`); every
    /// candidate is then checked against the whole query
    pub index_pattern: Option<&'a str>,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
    /// the last id of the previous page
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// Newest first by id (UUIDv7, time-ordered): users added while paging sort before the cursor, so
/// pages neither repeat nor skip a row. Only the filters given are added to the SQL, and the
/// statement is not kept prepared: PostgreSQL then plans each search with its pattern in hand — the
/// trigram index for a rare substring, the id index for a common one. A kept statement switches to
/// a generic plan after five runs, which cannot see the pattern and scanned every row for rare ones
/// (184 ms a search at 100 000 users, against 2.5 ms planned per call; see bench/RESULTS.md).
pub async fn search(db: impl PgExecutor<'_>, s: &Search<'_>) -> sqlx::Result<Vec<UserWithLinks>> {
    crate::telemetry::db_span("users.search", async move {
        // the links come with the page (PostgreSQL evaluates the subquery after the limit, for the
        // rows returned only): one round trip for a page instead of two
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "select {} from users where true",
            columns_with_links("users")
        ));
        if let Some(text) = s.query {
            let indexed = s.index_pattern.unwrap_or(text);
            q.push(" and search_text like '%' || ")
                .push_bind(escape_like(indexed))
                .push(" || '%' escape '\\'");
            if indexed != text {
                // the whole text, on an expression the trigram index does not cover: the planner
                // estimates it from the pattern (a long one is rare) instead of the shorter indexed
                // part alone, which it could take for common and answer by walking the id index
                // past a million rows (20 s seen at 1 000 000 users)
                q.push(" and (search_text || '') like '%' || ")
                    .push_bind(escape_like(text))
                    .push(" || '%' escape '\\'");
            }
        }
        if let Some(role) = s.role {
            q.push(" and role = ").push_bind(role);
        }
        if let Some(status) = s.status {
            q.push(" and status = ").push_bind(status);
        }
        if let Some(before) = s.before {
            q.push(" and id < ").push_bind(before);
        }
        q.push(" order by id desc limit ").push_bind(s.limit);
        crate::repo::db::built(&mut q)
            .persistent(false)
            .fetch_all(db)
            .await
    })
    .await
}

fn escape_like(q: &str) -> String {
    q.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Claims up to `limit` users soft-deleted before the cutoff. Rows another instance is purging are
/// skipped, so each is purged exactly once.
pub async fn claim_purgeable(
    conn: &mut PgConnection,
    older_than_days: i32,
    limit: i64,
) -> sqlx::Result<Vec<Uuid>> {
    crate::telemetry::db_span("users.claim_purgeable", async move {
        super::db::query_scalar(
            "select id from users
             where status = 'deleted' and deleted_at < now() - make_interval(days => $1)
             order by deleted_at
             limit $2
             for update skip locked",
        )
        .bind(older_than_days)
        .bind(limit)
        .fetch_all(conn)
        .await
    })
    .await
}
