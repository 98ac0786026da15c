//! Coalesced session reads: every private request checks its session in the database, and under
//! load those checks are gathered into one query (`sessions::states`) by a [`Batcher`].

use sqlx::PgConnection;
use uuid::Uuid;

use super::batch::{BatchRead, Batcher};
use super::sessions::{self, SessionState};

/// Session states by session id.
pub struct SessionStates;

impl BatchRead for SessionStates {
    type Key = Uuid;
    type Value = SessionState;
    const MAX_BATCH: usize = sessions::MAX_STATES;
    const NAME: &'static str = "sessions.state";

    async fn fetch(
        conn: &mut PgConnection,
        keys: &[Uuid],
    ) -> sqlx::Result<Vec<(Uuid, SessionState)>> {
        let rows = sessions::states(conn, keys).await?;
        Ok(rows.into_iter().map(|s| (s.session_id, s)).collect())
    }
}

/// The handle requests check their session with (`read(session_id)`).
pub type SessionReads = Batcher<SessionStates>;
