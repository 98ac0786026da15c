//! Background loops.

pub mod courier;
pub mod purge;
pub mod relay;

use sqlx::postgres::PgListener;

use crate::state::AppState;

/// A connection listening on `channel`, or none while the database is away (the loops poll
/// meanwhile and try again).
async fn listen(state: &AppState, channel: &str) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(state.db.direct()).await.ok()?;
    listener.listen(channel).await.ok()?;
    Some(listener)
}

/// Waits for a notification; false when the listener is gone (or there is none).
async fn wait(listener: &mut Option<PgListener>) -> bool {
    match listener {
        Some(l) => l.recv().await.is_ok(),
        None => std::future::pending().await,
    }
}
