//! The benchmark's OTLP/HTTP collector stand-in (bench/run.sh): `otlp_sink PORT [ok|slow|failing]`
//! accepts every `POST /v1/traces` over kept-alive connections, keeping nothing, on one thread so
//! it takes little of the cores the service is measured on, and answers 200 (`ok`, the default),
//! 200 after two seconds (`slow`) or 503 (`failing`). On SIGTERM it prints
//! `OTLP_EXPORTS=<requests> OTLP_BYTES=<body bytes>`, which shows the spans really went out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    Slow,
    Failing,
}

struct Received {
    answer: Answer,
    exports: AtomicU64,
    bytes: AtomicU64,
}

async fn receive(
    State(received): State<Arc<Received>>,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1]) {
    received.exports.fetch_add(1, Ordering::Relaxed);
    received
        .bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    let status = match received.answer {
        Answer::Ok => StatusCode::OK,
        Answer::Slow => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            StatusCode::OK
        }
        Answer::Failing => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, [("content-type", "application/x-protobuf")])
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let usage = || anyhow::anyhow!("usage: otlp_sink PORT [ok|slow|failing]");
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).ok_or_else(usage)?;
    let answer = match args.next().as_deref() {
        None | Some("ok") => Answer::Ok,
        Some("slow") => Answer::Slow,
        Some("failing") => Answer::Failing,
        Some(_) => return Err(usage()),
    };
    let received = Arc::new(Received {
        answer,
        exports: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
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
