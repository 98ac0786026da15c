//! Logging (JSON or human-readable lines on stdout, filtered by `RUST_LOG`) and, when
//! `telemetry.otlp_endpoint` is set, traces exported over OTLP/HTTP (protobuf) by a batch processor
//! on its own thread: a collector that is down or slow never slows a request (spans are dropped).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{filter_fn, FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::TelemetrySettings;

const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=warn";

/// Whether log lines can show a request span's fields (the log filter lets `info` spans through).
static LOGS_SHOW_REQUEST_SPANS: AtomicBool = AtomicBool::new(true);

/// Flushes the exporter when dropped (at shutdown).
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown();
        }
    }
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
    let provider = tracer_provider(traces);
    // the trace layer sees this crate's spans down to debug (database work, hashing) whatever the
    // log filter says, and nothing of the libraries (sqlx's per-query events would double the cost);
    // no log event becomes a span event: each request's `info` line would repeat its status on every
    // server span, and while this layer took warnings and errors the log layer lost every one of
    // them (`traces::warnings_and_errors_reach_the_log_with_traces_on`).
    // Each span carries only what its code sets: no source location, thread, target or busy/idle
    // times (four to six attributes more per span, a third of the cost of a traced GET me), and
    // entering a span does not switch the OpenTelemetry context (nothing here reads it implicitly)
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("users-service"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(
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
    Guard(provider)
}

fn tracer_provider(settings: &TelemetrySettings) -> Option<SdkTracerProvider> {
    let base = settings.otlp_endpoint.trim_end_matches('/');
    if base.is_empty() {
        return None;
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{base}/v1/traces"))
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| eprintln!("users-service: telemetry.otlp_endpoint: {e}; traces are off"))
        .ok()?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
    // bigger batches than the SDK's (512 spans of a 2 048 queue): at thousands of requests a second
    // a POST per 512 spans took a third of the exporter's CPU; `OTEL_BSP_*` still decide when set
    let mut batch = BatchConfigBuilder::default();
    if std::env::var_os("OTEL_BSP_MAX_QUEUE_SIZE").is_none() {
        batch = batch.with_max_queue_size(8192);
    }
    if std::env::var_os("OTEL_BSP_MAX_EXPORT_BATCH_SIZE").is_none() {
        batch = batch.with_max_export_batch_size(2048);
    }
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch.build())
        .build();
    Some(
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler)
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build(),
    )
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
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&HeaderReader(headers));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    if !LOGS_SHOW_REQUEST_SPANS.load(Ordering::Relaxed) {
        return;
    }
    let context = span.context();
    let ids = context.span().span_context().clone();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
}

/// The current trace as `traceparent` (and `tracestate`) headers for an outgoing call.
pub fn trace_headers() -> HashMap<String, String> {
    let mut headers = HashMap::new();
    TraceContextPropagator::new()
        .inject_context(&Span::current().context(), &mut HeaderWriter(&mut headers));
    headers
}

struct HeaderWriter<'a>(&'a mut HashMap<String, String>);

impl Injector for HeaderWriter<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
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
