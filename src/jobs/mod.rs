//! Background loops.

pub mod courier;
pub mod purge;
pub mod relay;

use sqlx::postgres::PgListener;

/// Waits for a notification, then takes every other one already arrived (one round serves them
/// all: it reads everything committed so far); false when the listener is gone (or there is none).
async fn wait(listener: &mut Option<PgListener>) -> bool {
    match listener {
        Some(l) => {
            let woke = l.recv().await.is_ok();
            drain(l);
            woke
        }
        None => std::future::pending().await,
    }
}

/// Takes the notifications that have already arrived, without waiting: every writing transaction
/// sends one, and a loop that took them one per round would run a round for each long after the
/// work itself was done.
fn drain(listener: &mut PgListener) {
    use futures::FutureExt as _;
    while let Some(Ok(Some(_))) = listener.try_recv().now_or_never() {}
}
