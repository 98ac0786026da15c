//! Logging (JSON or human-readable lines on stdout, filtered by `RUST_LOG`) and, when
//! `telemetry.otlp_endpoint` is set, traces: this crate's spans become OpenTelemetry spans
//! (`spans`) exported over OTLP/HTTP (protobuf) in batches from a thread of their own (`export`):
//! a collector that is down or slow never slows a request (spans are dropped).

mod export;
mod spans;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_subscriber::filter::{filter_fn, FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::TelemetrySettings;
use export::Batching;
use spans::{Ids, Sampler};

const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=warn";

/// Whether log lines can show a request span's fields (the log filter lets `info` spans through).
static LOGS_SHOW_REQUEST_SPANS: AtomicBool = AtomicBool::new(true);

/// Sends the queued spans when dropped (at shutdown).
pub struct Guard {
    _exporter: Option<export::Exporter>,
}

pub fn init(json: bool, traces: &TelemetrySettings) -> Guard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // below `info` the log layer never sees a request's span, so its log lines cannot show the ids
    LOGS_SHOW_REQUEST_SPANS.store(
        filter
            .max_level_hint()
            .is_none_or(|level| level >= LevelFilter::INFO),
        Ordering::Relaxed,
    );
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_filter(filter).boxed()
    };
    let exporting = exporter(traces);
    // the trace layer sees this crate's spans down to debug (database work, hashing) whatever the
    // log filter says, and nothing of the libraries (sqlx's per-query spans would double the
    // cost); no log event becomes a span event (each request's `info` line would repeat its
    // status on every server span)
    let otel = exporting.as_ref().map(|(_, queue)| {
        spans::SpanLayer::new(queue.clone(), Sampler::new(traces.sample_ratio)).with_filter(
            Targets::new()
                .with_target("users_service", LevelFilter::DEBUG)
                .and(
                    filter_fn(|meta| meta.is_span())
                        // without a hint the whole subscriber's would be `trace`, and every
                        // library's `log::trace!` would build its record
                        .with_max_level_hint(LevelFilter::DEBUG),
                ),
        )
    });
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    Guard {
        _exporter: exporting.map(|(exporter, _)| exporter),
    }
}

fn exporter(settings: &TelemetrySettings) -> Option<(export::Exporter, Arc<export::Queue>)> {
    let base = settings.otlp_endpoint.trim_end_matches('/');
    if base.is_empty() {
        return None;
    }
    let batching = Batching::from_env(|name| std::env::var(name).ok());
    // a part per worker thread, and one for the blocking pool's threads (hashing spans)
    let queue = Arc::new(export::Queue::new(batching, num_cpus::get() + 1));
    let exporter = export::Exporter::start(
        queue.clone(),
        format!("{base}/v1/traces"),
        settings.service_name.clone(),
    )
    .map_err(|e| eprintln!("users-service: the trace exporter did not start: {e}; traces are off"))
    .ok()?;
    Some((exporter, queue))
}

struct HeaderReader<'a>(&'a HeaderMap);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Continues an incoming W3C `traceparent` in `span`, and records the span's trace and span ids as
/// its `trace_id` / `span_id` fields so log lines inside carry them (when the log filter shows
/// request spans at all: otherwise they would only repeat, as attributes, the span's own ids).
pub fn continue_trace(span: &Span, headers: &HeaderMap) {
    let remote = headers
        .contains_key("traceparent")
        .then(|| {
            let parent = TraceContextPropagator::new().extract(&HeaderReader(headers));
            let context = parent.span().span_context().clone();
            context.is_valid().then(|| Ids {
                trace_id: context.trace_id().to_bytes(),
                span_id: context.span_id().to_bytes(),
                sampled: context.is_sampled(),
            })
        })
        .flatten();
    let ids = spans::with_data(span, |data| {
        if let Some(remote) = remote {
            data.continue_from(remote);
        }
        data.ids
    });
    if let Some(ids) = ids.filter(|_| LOGS_SHOW_REQUEST_SPANS.load(Ordering::Relaxed)) {
        span.record(
            "trace_id",
            tracing::field::display(TraceId::from_bytes(ids.trace_id)),
        );
        span.record(
            "span_id",
            tracing::field::display(SpanId::from_bytes(ids.span_id)),
        );
    }
}

/// The current trace as a `traceparent` header for an outgoing call (none when traces are off).
pub fn trace_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let traceparent = spans::with_data(&Span::current(), |data| data.ids).and_then(|ids| {
        HeaderValue::try_from(format!(
            "00-{}-{}-{:02x}",
            TraceId::from_bytes(ids.trace_id),
            SpanId::from_bytes(ids.span_id),
            u8::from(ids.sampled)
        ))
        .ok()
    });
    if let Some(value) = traceparent {
        headers.insert("traceparent", value);
    }
    headers
}

/// `spawn_blocking` that keeps the caller's span, so the request id follows the work.
pub fn spawn_blocking_in_span<T, F>(f: F) -> tokio::task::JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let span = Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}
