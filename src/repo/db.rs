//! The database handle every repository runs on, and the statement helpers every query is built
//! with, so that one setting (`database.pgbouncer`) makes the whole service safe behind PgBouncer in
//! transaction pooling mode.
//!
//! Behind such a pooler a server connection belongs to a client only for one transaction: outside
//! a transaction each protocol round trip (sqlx prepares a statement in one and binds it in the
//! next) may land on another server, and a named statement outlives the transaction on a server
//! the next client gets. So, when pinned:
//! - every statement is unnamed ([`query`], [`query_as`], [`query_scalar`], [`built`]; clippy
//!   forbids sqlx's own constructors elsewhere), and is re-planned each time;
//! - a statement run on the pool (not in a transaction) is wrapped in one, so its round trips share
//!   a server ([`Db`]'s `Executor`);
//! - LISTEN connections, the relay's session-level advisory lock and migrations use a direct
//!   connection ([`Db::direct`], from `database.migrate_url`);
//! - the batched reads (`batch`) run their own transactions on connections they hold, and the
//!   session check calls the `session_states` function, whose plan the server keeps.
//!
//! sqlx's own lookups of types it does not know (a `#[derive(sqlx::Type)]` with a `type_name`, an
//! enum, domain or extension type in a column) use named statements this module cannot reach, so
//! behind PgBouncer every column and parameter must be a builtin type (`domain::text_column!`
//! stores the enums as `text`); `pgbouncer::the_sign_in_flow…` checks no named statement is left.
//!
//! Without PgBouncer nothing changes: statements are named and cached per connection and a pool
//! statement is one round trip.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt as _, TryStreamExt as _};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgListener, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{
    Database, Describe, Either, Error, Execute, Executor, PgPool, Postgres, QueryBuilder,
    Transaction,
};

/// Whether statements may be named and kept by their connection. One process serves one database
/// through one kind of connection, so this is set once, when a pinned [`Db`] is made.
static NAMED_STATEMENTS: AtomicBool = AtomicBool::new(true);

fn named() -> bool {
    NAMED_STATEMENTS.load(Ordering::Relaxed)
}

/// Whether this process reaches PostgreSQL through PgBouncer in transaction mode.
pub fn behind_pgbouncer() -> bool {
    !named()
}

/// `sqlx::query`, unnamed behind PgBouncer.
#[allow(clippy::disallowed_methods)]
pub fn query(sql: &str) -> Query<'_, Postgres, PgArguments> {
    sqlx::query(sql).persistent(named())
}

/// `sqlx::query_as`, unnamed behind PgBouncer.
#[allow(clippy::disallowed_methods)]
pub fn query_as<'q, O>(sql: &'q str) -> QueryAs<'q, Postgres, O, PgArguments>
where
    O: for<'r> sqlx::FromRow<'r, PgRow>,
{
    sqlx::query_as(sql).persistent(named())
}

/// `sqlx::query_scalar`, unnamed behind PgBouncer.
#[allow(clippy::disallowed_methods)]
pub fn query_scalar<'q, O>(sql: &'q str) -> QueryScalar<'q, Postgres, O, PgArguments>
where
    (O,): for<'r> sqlx::FromRow<'r, PgRow>,
{
    sqlx::query_scalar(sql).persistent(named())
}

/// What a `QueryBuilder` built, unnamed behind PgBouncer.
#[allow(clippy::disallowed_methods)]
pub fn built<'q, O>(q: &'q mut QueryBuilder<'_, Postgres>) -> QueryAs<'q, Postgres, O, PgArguments>
where
    O: sqlx::FromRow<'q, PgRow>,
{
    q.build_query_as().persistent(named())
}

/// The pool, and how to reach the database directly.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
    /// LISTEN connections, session-level locks, migrations: over `database.migrate_url` when set,
    /// else the pool itself
    direct: PgPool,
    /// `database.pgbouncer`: a pool statement runs in a transaction of its own
    pinned: bool,
}

impl From<PgPool> for Db {
    /// A pool straight to PostgreSQL, for everything.
    fn from(pool: PgPool) -> Self {
        Self::new(pool.clone(), pool, false)
    }
}

impl Db {
    /// The requests' pool, a pool straight to PostgreSQL for what needs a session of its own, and
    /// whether the first is PgBouncer in transaction mode (`pinned`: from then on every statement
    /// of this process is unnamed).
    pub fn new(pool: PgPool, direct: PgPool, pinned: bool) -> Self {
        if pinned {
            NAMED_STATEMENTS.store(false, Ordering::Relaxed);
        }
        Self {
            pool,
            direct,
            pinned,
        }
    }

    /// Whether the requests' pool is PgBouncer in transaction mode.
    pub fn behind_pgbouncer(&self) -> bool {
        self.pinned
    }

    /// Connections the requests' pool holds, and how many of them are idle (for `/metrics`).
    pub fn pool_size(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// A pool straight to PostgreSQL: for session-level advisory locks and migrations.
    pub fn direct(&self) -> &PgPool {
        &self.direct
    }

    /// A connection listening on `channel`, straight to PostgreSQL (a `LISTEN` outlives any
    /// transaction); none while the database is away.
    pub async fn listen(&self, channel: &str) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.direct).await.ok()?;
        listener.listen(channel).await.ok()?;
        Some(listener)
    }

    /// Closes both pools.
    pub async fn close(&self) {
        self.pool.close().await;
        self.direct.close().await;
    }

    /// A connection of the requests' pool, held until dropped.
    pub async fn acquire(&self) -> sqlx::Result<PoolConnection<Postgres>> {
        self.pool.acquire().await
    }

    pub async fn begin(&self) -> sqlx::Result<Transaction<'static, Postgres>> {
        self.pool.begin().await
    }

    /// Its own transaction around one statement (pinned only).
    async fn in_transaction<'q, E>(
        &self,
        query: E,
    ) -> sqlx::Result<Vec<Either<PgQueryResult, PgRow>>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let mut tx = self.pool.begin().await?;
        let out = tx.fetch_many(Unnamed(query)).try_collect().await?;
        tx.commit().await?;
        Ok(out)
    }
}

// like sqlx's pool: an executor for any lifetime, its futures owning a clone of the handle
impl<'c> Executor<'c> for &'_ Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pinned {
            return self.pool.fetch_many(query);
        }
        let db = self.clone();
        stream::once(async move { db.in_transaction(query).await })
            .map_ok(|items| stream::iter(items.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pinned {
            return self.pool.fetch_optional(query);
        }
        let db = self.clone();
        Box::pin(async move {
            let items = db.in_transaction(query).await?;
            Ok(items.into_iter().find_map(Either::right))
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, Error>>
    where
        'c: 'e,
    {
        // a prepared statement is named: only on a direct connection
        self.direct.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Postgres>, Error>>
    where
        'c: 'e,
    {
        self.direct.describe(sql)
    }
}

/// A statement run unnamed, whatever it was built with.
struct Unnamed<E>(E);

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Unnamed<E> {
    fn sql(&self) -> &'q str {
        self.0.sql()
    }

    fn statement(&self) -> Option<&<Postgres as Database>::Statement<'q>> {
        self.0.statement()
    }

    fn take_arguments(
        &mut self,
    ) -> Result<Option<<Postgres as Database>::Arguments<'q>>, sqlx::error::BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        false
    }
}
