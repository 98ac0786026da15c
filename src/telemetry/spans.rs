//! A span as the exporter sends it: its ids (a child inherits its parent's trace and sampling
//! decision; a root is sampled by its trace id at `telemetry.sample_ratio`), its name, its times
//! and its attributes. Spans are made by `context` for a request, its database work and its
//! hashing, not by `tracing`: tracing-subscriber's registry making two spans per request cost
//! more than five per cent of GET me (bench/PROFILE.md).

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::ops::Range;
use std::time::SystemTime;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

/// Where a span sits in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// An attribute's value, as OTLP types it; a string is a range of its span's `text`, or a
/// constant.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(Range<usize>),
    Static(&'static str),
    Int(i64),
}

/// One span, from its opening to its closing. Every string it records (its name when it is not a
/// constant, its attributes) is written into one buffer: a request span is one allocation of
/// text, not one per field.
#[derive(Debug)]
pub struct SpanData {
    pub ids: Ids,
    pub parent: Option<[u8; 8]>,
    /// the span's name, unless `set_name` wrote one into `text`
    static_name: &'static str,
    name: Option<Range<usize>>,
    /// a request's own span (kind server); every other span is internal
    pub server: bool,
    pub start: SystemTime,
    pub end: SystemTime,
    text: String,
    attributes: Vec<(&'static str, Value)>,
}

impl SpanData {
    /// A span opened now, with room for `fields` attributes and `text` bytes of their strings.
    pub fn new(
        ids: Ids,
        parent: Option<[u8; 8]>,
        name: &'static str,
        fields: usize,
        text: usize,
    ) -> Self {
        let start = SystemTime::now();
        Self {
            ids,
            parent,
            static_name: name,
            name: None,
            server: false,
            start,
            end: start,
            text: String::with_capacity(text),
            attributes: Vec::with_capacity(fields),
        }
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
                Value::Static(s) => AttributeRef::Str(s),
                Value::Int(i) => AttributeRef::Int(*i),
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

    /// Sets the span's name (`<METHOD> <route>` for a server span).
    pub fn set_name(&mut self, name: fmt::Arguments<'_>) {
        let start = self.text.len();
        let _ = self.text.write_fmt(name);
        self.name = Some(start..self.text.len());
    }

    pub fn set_static(&mut self, key: &'static str, value: &'static str) {
        self.set(key, Value::Static(value));
    }

    pub fn set_str(&mut self, key: &'static str, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.set(key, Value::Str(start..self.text.len()));
    }

    pub fn set_display(&mut self, key: &'static str, value: impl fmt::Display) {
        let start = self.text.len();
        let _ = write!(self.text, "{value}");
        self.set(key, Value::Str(start..self.text.len()));
    }

    pub fn set_int(&mut self, key: &'static str, value: i64) {
        self.set(key, Value::Int(value));
    }
}

/// An attribute's value as the exporter reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttributeRef<'a> {
    Str(&'a str),
    Int(i64),
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

pub fn new_id<const N: usize>() -> [u8; N] {
    IDS.with(|rng| {
        let mut rng = rng.borrow_mut();
        let mut id = [0u8; N];
        while id == [0u8; N] {
            rng.fill_bytes(&mut id);
        }
        id
    })
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
