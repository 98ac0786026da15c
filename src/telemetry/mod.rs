//! Logging (JSON or human-readable lines on stdout, filtered by `RUST_LOG`) and, when
//! `telemetry.otlp_endpoint` is set, traces: each request's server span and its database and
//! hashing spans (`context`, `spans`) exported over OTLP/HTTP (protobuf) in batches from a thread
//! of their own (`export`): a collector that is down or slow never slows a request (spans are
//! dropped).

mod context;
mod export;
mod spans;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::{MatchedPath, Request};
use axum::http::Response;
use axum::http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::TelemetrySettings;
use context::Tracer;
pub use context::{child_span, db_span, OpenSpan};
use export::Batching;
use spans::{Ids, Sampler, Value};

const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=warn";

/// Whether log lines can show a request span's fields (the log filter lets `info` spans through).
static LOGS_SHOW_REQUEST_SPANS: AtomicBool = AtomicBool::new(true);

/// Set when traces are exported (the first `init` with an endpoint wins).
static TRACER: OnceLock<Tracer> = OnceLock::new();

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
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(fmt).try_init();
    let exporter = exporter(traces).map(|(exporter, queue)| {
        let _ = TRACER.set(Tracer::new(queue, Sampler::new(traces.sample_ratio)));
        exporter
    });
    Guard {
        _exporter: exporter,
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

/// The layer that gives each request its server span: `<METHOD> <route template>`, continuing
/// the caller's W3C `traceparent`, with the method, the route and the status. It goes inside the
/// `tracing` request span, whose `trace_id` / `span_id` fields it sets so log lines carry them
/// (when the log filter shows request spans at all). `None` when traces are off.
pub fn trace_requests() -> Option<TraceRequestsLayer> {
    TRACER.get().map(|tracer| TraceRequestsLayer { tracer })
}

#[derive(Clone, Copy)]
pub struct TraceRequestsLayer {
    tracer: &'static Tracer,
}

impl<S> tower::Layer<S> for TraceRequestsLayer {
    type Service = TraceRequests<S>;

    fn layer(&self, inner: S) -> TraceRequests<S> {
        TraceRequests {
            inner,
            tracer: self.tracer,
        }
    }
}

/// `TraceRequestsLayer`'s service (a tower service of its own, not `from_fn`: that clones the
/// inner service and boxes its future for every request).
#[derive(Clone)]
pub struct TraceRequests<S> {
    inner: S,
    tracer: &'static Tracer,
}

impl<S, B> tower::Service<Request> for TraceRequests<S>
where
    S: tower::Service<Request, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = context::InRequest<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(Value::Static("unmatched"), |path| {
                Value::Route(path.clone())
            });
        let span =
            self.tracer
                .server_span(remote_parent(req.headers()), req.method().as_str(), route);
        if let Some(ids) = span
            .ids()
            .filter(|_| LOGS_SHOW_REQUEST_SPANS.load(Ordering::Relaxed))
        {
            let logged = Span::current();
            logged.record(
                "trace_id",
                tracing::field::display(TraceId::from_bytes(ids.trace_id)),
            );
            logged.record(
                "span_id",
                tracing::field::display(SpanId::from_bytes(ids.span_id)),
            );
        }
        context::in_request(span, self.inner.call(req))
    }
}

/// The caller's span, from a valid W3C `traceparent` (anything else starts a trace of our own).
fn remote_parent(headers: &HeaderMap) -> Option<Ids> {
    if !headers.contains_key("traceparent") {
        return None;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderReader(headers));
    let context = parent.span().span_context().clone();
    context.is_valid().then(|| Ids {
        trace_id: context.trace_id().to_bytes(),
        span_id: context.span_id().to_bytes(),
        sampled: context.is_sampled(),
    })
}

/// Records a field of the request: on its log span, and as an attribute of its server span.
pub fn record_request_field<V: fmt::Display + Into<Value>>(key: &'static str, value: V) {
    Span::current().record(key, tracing::field::display(&value));
    context::annotate(key, value);
}

/// The current trace as a `traceparent` header for an outgoing call (none outside a traced
/// request).
pub fn trace_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let traceparent = context::current().and_then(|ids| {
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
