//! `GET /metrics`: the Prometheus exposition, with the gauges sampled at scrape time.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::metrics::{RequestLabels, RouteLabels, StateLabels};
use crate::service::{events, mail};
use crate::state::AppState;

/// A scrape never waits long for the one figure that needs a query: the last value stays.
const BACKLOG_QUERY_TIMEOUT: Duration = Duration::from_millis(500);

#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    responses((status = 200, content_type = "text/plain", body = String,
        description = "Prometheus text format (0.0.4): requests and latency per route template, sign-ins, sign-ups, \
            hashing, pool, outbox backlogs, mail outcomes, build info. Off with `metrics.enabled: false`"))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let m = &state.metrics;
    m.hash_waiting.set(state.passwords.waiting() as i64);
    let (size, idle) = state.db.pool_size();
    let (size, idle) = (i64::from(size), idle as i64);
    m.db_pool
        .get_or_create(&StateLabels { state: "idle" })
        .set(idle);
    m.db_pool
        .get_or_create(&StateLabels { state: "in_use" })
        .set((size - idle).max(0));
    // during an outage the scrape still answers, with the last backlogs seen
    let (mail, events) = tokio::join!(
        tokio::time::timeout(BACKLOG_QUERY_TIMEOUT, mail::backlog(&state)),
        tokio::time::timeout(BACKLOG_QUERY_TIMEOUT, events::backlog(&state)),
    );
    for (outbox, backlog) in [("messages", mail), ("events", events)] {
        if let Ok(Ok(backlog)) = backlog {
            m.outbox_pending
                .get_or_create(&crate::metrics::OutboxLabels { outbox })
                .set(backlog);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.encode(),
    )
}

/// Global: counts every request and its latency under its route template (`unmatched` for the
/// fallback), never the raw path.
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let m = &state.metrics;
    m.http_duration
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.http_requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
