//! The benchmark's OTLP/HTTP collector stand-in (bench/run.sh): `otlp_sink PORT` accepts every
//! `POST /v1/traces` and answers 200 over kept-alive connections, keeping nothing, on one thread so
//! it takes little of the cores the service is measured on. On SIGTERM it prints
//! `OTLP_EXPORTS=<requests> OTLP_BYTES=<body bytes>`, which shows the spans really went out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;

#[derive(Default)]
struct Received {
    exports: AtomicU64,
    bytes: AtomicU64,
}

async fn receive(
    State(received): State<Arc<Received>>,
    body: Bytes,
) -> [(&'static str, &'static str); 1] {
    received.exports.fetch_add(1, Ordering::Relaxed);
    received
        .bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    [("content-type", "application/x-protobuf")]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("usage: otlp_sink PORT"))?;
    let received = Arc::new(Received::default());
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            term.recv().await;
        })
        .await?;
    println!(
        "OTLP_EXPORTS={} OTLP_BYTES={}",
        received.exports.load(Ordering::Relaxed),
        received.bytes.load(Ordering::Relaxed)
    );
    Ok(())
}
