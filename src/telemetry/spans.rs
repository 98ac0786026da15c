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
