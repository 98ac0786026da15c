//! The layer that turns this crate's `tracing` spans into OpenTelemetry spans: each span gets its
//! ids when it opens (a child inherits its parent's trace and sampling decision; a root is sampled
//! by its trace id at `telemetry.sample_ratio`), keeps the fields its code records as attributes,
//! and is handed to the exporter's queue when it closes. Nothing else runs on the request path: no
//! span builder, no context switch on enter and exit, no per-span channel send.
//! (tracing-opentelemetry with the OpenTelemetry SDK took a quarter of GET me's rate doing this;
//! bench/PROFILE.md.)

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, Registry};
use tracing_subscriber::Layer;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use super::export::Queue;

/// Where a span sits in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// An attribute's value, as OTLP types it; a string is a range of its span's `text`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Range<usize>),
    Int(i64),
    Double(f64),
    Bool(bool),
}

/// One span, from its opening to its closing. Every string it records (its name when the code
/// sets `otel.name`, its attributes) is written into one buffer: a request span is one
/// allocation of text, not one per field.
#[derive(Debug)]
pub struct SpanData {
    pub ids: Ids,
    pub parent: Option<[u8; 8]>,
    /// the span's own name, unless the code sets `otel.name`
    static_name: &'static str,
    name: Option<Range<usize>>,
    /// `otel.kind = "server"`; every other span is internal
    pub server: bool,
    pub start: SystemTime,
    pub end: SystemTime,
    text: String,
    attributes: Vec<(&'static str, Value)>,
}

impl SpanData {
    pub fn new(ids: Ids, parent: Option<[u8; 8]>, name: &'static str, fields: usize) -> Self {
        let start = SystemTime::now();
        Self {
            ids,
            parent,
            static_name: name,
            name: None,
            server: false,
            start,
            end: start,
            text: String::with_capacity(if fields > 0 { 128 } else { 0 }),
            attributes: Vec::with_capacity(fields),
        }
    }

    /// A caller's trace (an incoming `traceparent`) continued: the span takes its trace id, its
    /// span as parent, and its sampling decision (parent-based).
    pub fn continue_from(&mut self, remote: Ids) {
        self.ids.trace_id = remote.trace_id;
        self.ids.sampled = remote.sampled;
        self.parent = Some(remote.span_id);
    }

    pub fn name(&self) -> &str {
        match &self.name {
            Some(range) => &self.text[range.clone()],
            None => self.static_name,
        }
    }

    pub fn attributes(&self) -> impl Iterator<Item = (&'static str, AttributeRef<'_>)> {
        self.attributes.iter().map(|(key, value)| {
            let value = match value {
                Value::Str(range) => AttributeRef::Str(&self.text[range.clone()]),
                Value::Int(i) => AttributeRef::Int(*i),
                Value::Double(d) => AttributeRef::Double(*d),
                Value::Bool(b) => AttributeRef::Bool(*b),
            };
            (*key, value)
        })
    }

    fn set(&mut self, key: &'static str, value: Value) {
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.attributes.push((key, value)),
        }
    }

    /// Writes a string field's value into `text` and files it by the field's name.
    fn record_text(&mut self, field: &Field, write: impl FnOnce(&mut String)) {
        let key = field.name();
        // the span's own ids, recorded for log lines: not attributes
        if key == "trace_id" || key == "span_id" {
            return;
        }
        let start = self.text.len();
        write(&mut self.text);
        let range = start..self.text.len();
        match key {
            "otel.name" => self.name = Some(range),
            "otel.kind" => {
                self.server = &self.text[range] == "server";
                self.text.truncate(start);
            }
            key => self.set(key, Value::Str(range)),
        }
    }
}

/// An attribute's value as the exporter reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttributeRef<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl Visit for SpanData {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_text(field, |text| text.push_str(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_text(field, |text| {
            let _ = write!(text, "{value:?}");
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Value::Int(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.set(field.name(), Value::Int(v)),
            Err(_) => self.record_text(field, |text| {
                let _ = write!(text, "{value}");
            }),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), Value::Double(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Value::Bool(value));
    }
}

/// The OpenTelemetry SDK's `TraceIdRatioBased` rule, so a trace's fate is the same in every
/// service sampling at the same ratio: kept when the trace id's low 63 bits fall below the ratio.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    bound: Option<u64>,
}

impl Sampler {
    pub fn new(ratio: f64) -> Self {
        let bound = (ratio < 1.0).then(|| (ratio.max(0.0) * (1u64 << 63) as f64) as u64);
        Self { bound }
    }

    pub fn keeps(&self, trace_id: &[u8; 16]) -> bool {
        let Some(bound) = self.bound else {
            return true;
        };
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id[8..]);
        (u64::from_be_bytes(low) >> 1) < bound
    }
}

thread_local! {
    /// Ids need to be unique, not secret: a small generator per thread, seeded once, instead of
    /// the reseeding cryptographic one (whose reseeds were system calls on the request path).
    static IDS: RefCell<SmallRng> = RefCell::new(SmallRng::from_entropy());
}

fn new_id<const N: usize>() -> [u8; N] {
    IDS.with(|rng| {
        let mut rng = rng.borrow_mut();
        let mut id = [0u8; N];
        while id == [0u8; N] {
            rng.fill_bytes(&mut id);
        }
        id
    })
}

pub struct SpanLayer {
    queue: Arc<Queue>,
    sampler: Sampler,
}

impl SpanLayer {
    pub fn new(queue: Arc<Queue>, sampler: Sampler) -> Self {
        Self { queue, sampler }
    }
}

impl<S> Layer<S> for SpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        // the nearest enclosing span this layer sees (its filter's view of the tree)
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<SpanData>().map(|d| d.ids));
        let span_id = new_id::<8>();
        let ids = match parent {
            Some(p) => Ids { span_id, ..p },
            None => {
                let trace_id = new_id::<16>();
                Ids {
                    trace_id,
                    span_id,
                    sampled: self.sampler.keeps(&trace_id),
                }
            }
        };
        let mut data = SpanData::new(
            ids,
            parent.map(|p| p.span_id),
            attrs.metadata().name(),
            attrs.fields().len(),
        );
        attrs.record(&mut data);
        span.extensions_mut().insert(data);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(data) = span.extensions_mut().get_mut::<SpanData>() {
                values.record(data);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(mut data) = span.extensions_mut().remove::<SpanData>() else {
            return;
        };
        if data.ids.sampled {
            data.end = SystemTime::now();
            self.queue.push(data);
        }
    }
}

/// Runs `f` on `span`'s trace data: `None` when traces are off or this layer does not see `span`.
pub fn with_data<T>(span: &tracing::Span, f: impl FnOnce(&mut SpanData) -> T) -> Option<T> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let span = registry.span(id)?;
        let mut extensions = span.extensions_mut();
        extensions.get_mut::<SpanData>().map(f)
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_keeps_traces_as_the_sdk_does() {
        let mut id = [0u8; 16];
        assert!(Sampler::new(1.0).keeps(&id));
        assert!(!Sampler::new(0.0).keeps(&id));
        // low half 0x4000…: (that >> 1) is a quarter of 2^63
        id[8] = 0x40;
        assert!(Sampler::new(0.3).keeps(&id));
        assert!(!Sampler::new(0.2).keeps(&id));
        let kept = (0..10_000)
            .filter(|_| Sampler::new(0.25).keeps(&rand::random()))
            .count();
        assert!((2_000..3_000).contains(&kept), "{kept} of 10 000");
    }
}

#[cfg(test)]
mod layer_tests {
    use std::time::Duration;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::export::{encode, Batching};

    /// Spans opened and closed under the layer, as a collector decodes them.
    fn exported(ratio: f64, work: impl FnOnce()) -> ExportTraceServiceRequest {
        let queue = Arc::new(Queue::new(
            Batching {
                max_queue: 64,
                max_batch: 64,
                delay: Duration::ZERO,
                timeout: Duration::from_secs(1),
            },
            1,
        ));
        let subscriber =
            tracing_subscriber::registry().with(SpanLayer::new(queue.clone(), Sampler::new(ratio)));
        tracing::subscriber::with_default(subscriber, work);
        let mut spans = Vec::new();
        queue.take(&mut spans);
        ExportTraceServiceRequest::decode(encode("users-test", &spans).as_slice())
            .expect("a valid OTLP request")
    }

    #[test]
    fn spans_leave_as_otlp_with_their_names_attributes_and_parents() {
        let request = exported(1.0, || {
            let server = tracing::info_span!(
                "request",
                otel.name = "GET /api/v1/private/users/me",
                otel.kind = "server",
                http.route = "/api/v1/private/users/me",
                http.response.status_code = tracing::field::Empty,
                user_id = tracing::field::Empty,
                trace_id = "not an attribute",
            );
            let _entered = server.enter();
            server.record("http.response.status_code", 200u16);
            server.record("user_id", tracing::field::display("u-1"));
            tracing::debug_span!(
                "read",
                db.system = "postgresql",
                rows = -1i64,
                hit = true,
                share = 0.5
            )
            .in_scope(|| {});
        });
        let resource = &request.resource_spans[0];
        let service = &resource.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        assert_eq!(
            service.value.as_ref().unwrap().value,
            Some(Any::StringValue("users-test".into()))
        );
        let scope = &resource.scope_spans[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "users-service");
        // the child closes first
        let [read, server] = &scope.spans[..] else {
            panic!("two spans: {:?}", scope.spans);
        };
        let attribute = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value)
        };
        assert_eq!(server.name, "GET /api/v1/private/users/me");
        assert_eq!(server.kind, 2, "server");
        assert!(server.parent_span_id.is_empty(), "a root");
        assert_eq!(server.flags, 1, "sampled");
        assert!(server.end_time_unix_nano >= server.start_time_unix_nano);
        assert!(server.start_time_unix_nano > 0);
        assert_eq!(
            attribute(server, "http.route"),
            Some(Any::StringValue("/api/v1/private/users/me".into()))
        );
        assert_eq!(
            attribute(server, "http.response.status_code"),
            Some(Any::IntValue(200))
        );
        assert_eq!(
            attribute(server, "user_id"),
            Some(Any::StringValue("u-1".into()))
        );
        for hidden in ["otel.name", "otel.kind", "trace_id"] {
            assert_eq!(attribute(server, hidden), None, "{hidden}");
        }
        assert_eq!(read.name, "read");
        assert_eq!(read.kind, 1, "internal");
        assert_eq!(read.trace_id, server.trace_id);
        assert_eq!(read.parent_span_id, server.span_id);
        assert_ne!(read.span_id, server.span_id);
        assert_eq!(
            attribute(read, "db.system"),
            Some(Any::StringValue("postgresql".into()))
        );
        assert_eq!(attribute(read, "rows"), Some(Any::IntValue(-1)));
        assert_eq!(attribute(read, "hit"), Some(Any::BoolValue(true)));
        assert_eq!(attribute(read, "share"), Some(Any::DoubleValue(0.5)));
        assert_eq!(server.trace_id.len(), 16);
        assert_eq!(server.span_id.len(), 8);
    }

    #[test]
    fn a_callers_trace_is_continued_and_an_unsampled_one_is_not_exported() {
        let remote = |sampled| Ids {
            trace_id: [7; 16],
            span_id: [9; 8],
            sampled,
        };
        let request = exported(0.0, || {
            let span = tracing::info_span!("request");
            with_data(&span, |data| data.continue_from(remote(true)));
            span.in_scope(|| tracing::debug_span!("password.verify").in_scope(|| {}));
        });
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 2, "the caller's decision wins over the ratio");
        assert!(spans.iter().all(|s| s.trace_id == [7; 16]));
        assert_eq!(spans[1].parent_span_id, [9; 8]);
        assert_eq!(spans[0].parent_span_id, spans[1].span_id);

        let request = exported(1.0, || {
            let span = tracing::info_span!("request");
            with_data(&span, |data| data.continue_from(remote(false)));
            span.in_scope(|| tracing::debug_span!("password.verify").in_scope(|| {}));
        });
        assert!(request.resource_spans[0].scope_spans[0].spans.is_empty());
        // nothing recorded at a ratio of 0 without a caller
        let request = exported(0.0, || tracing::info_span!("request").in_scope(|| {}));
        assert!(request.resource_spans[0].scope_spans[0].spans.is_empty());
    }
}
