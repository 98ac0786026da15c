//! A span as the exporter sends it: its ids (a child inherits its parent's trace and sampling
//! decision; a root is sampled by its trace id at `telemetry.sample_ratio`), its name, its times
//! and its attributes. Spans are made by `context` for a request, its database work and its
//! hashing, not by `tracing`: tracing-subscriber's registry making two spans per request cost
//! more than five per cent of GET me (bench/PROFILE.md).

use std::cell::RefCell;
use std::time::SystemTime;

use axum::extract::MatchedPath;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use smallvec::SmallVec;
use uuid::Uuid;

/// Where a span sits in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// An attribute's value. None allocates on the request path: a route is the router's own shared
/// template, a user id is formatted only when the span is encoded.
#[derive(Debug, Clone)]
pub enum Value {
    Static(&'static str),
    Route(MatchedPath),
    Owned(Box<str>),
    Uuid(Uuid),
    Int(i64),
}

impl Value {
    /// The value as OTLP types it; `scratch` holds a formatted id.
    pub fn as_attribute<'a>(&'a self, scratch: &'a mut [u8; 36]) -> AttributeRef<'a> {
        match self {
            Value::Static(s) => AttributeRef::Str(s),
            Value::Route(path) => AttributeRef::Str(path.as_str()),
            Value::Owned(s) => AttributeRef::Str(s),
            Value::Uuid(id) => AttributeRef::Str(id.hyphenated().encode_lower(scratch)),
            Value::Int(i) => AttributeRef::Int(*i),
        }
    }
}

impl From<Uuid> for Value {
    fn from(id: Uuid) -> Self {
        Value::Uuid(id)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Owned(s.into())
    }
}

/// The attributes a span keeps without allocating: a server span's method, status and user.
const INLINE_ATTRIBUTES: usize = 4;

/// One span, from its opening to its closing, in one piece: it is moved whole into the exporter's
/// queue, and nothing in it was allocated (a span allocated on a worker thread and freed on the
/// exporter's cost more than making it).
#[derive(Debug)]
pub struct SpanData {
    pub ids: Ids,
    pub parent: Option<[u8; 8]>,
    /// the span's name; a server span's is `<method> <route>`, and this is its method
    name: &'static str,
    /// a server span's route template (`http.route`)
    route: Option<Value>,
    /// a request's own span (kind server); every other span is internal
    pub server: bool,
    pub start: SystemTime,
    pub end: SystemTime,
    attributes: SmallVec<[(&'static str, Value); INLINE_ATTRIBUTES]>,
}

impl SpanData {
    /// An internal span named `name`, opened now.
    pub fn new(ids: Ids, parent: Option<[u8; 8]>, name: &'static str) -> Self {
        let start = SystemTime::now();
        Self {
            ids,
            parent,
            name,
            route: None,
            server: false,
            start,
            end: start,
            attributes: SmallVec::new(),
        }
    }

    /// A request's server span, opened now: named `<method> <route>`, with `http.request.method`
    /// and `http.route`. A method HTTP does not define is `_OTHER`, as the semantic conventions
    /// say.
    pub fn server(ids: Ids, parent: Option<[u8; 8]>, method: &str, route: Value) -> Self {
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "HEAD" => "HEAD",
            "OPTIONS" => "OPTIONS",
            "TRACE" => "TRACE",
            "CONNECT" => "CONNECT",
            _ => "_OTHER",
        };
        let mut data = Self::new(ids, parent, method);
        data.server = true;
        data.route = Some(route);
        data.set("http.request.method", Value::Static(method));
        data
    }

    /// The name, and the route that follows it after a space (a server span's).
    pub fn name(&self) -> (&'static str, Option<&Value>) {
        (self.name, self.route.as_ref())
    }

    /// The attributes, `http.route` first when the span has a route.
    pub fn attributes(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        let route = self.route.as_ref().map(|route| ("http.route", route));
        route
            .into_iter()
            .chain(self.attributes.iter().map(|(key, value)| (*key, value)))
    }

    /// Sets attribute `key` (again: the last value stands).
    pub fn set(&mut self, key: &'static str, value: Value) {
        match self.attributes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.attributes.push((key, value)),
        }
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
    fn a_server_span_is_named_by_its_method_and_route_and_an_unknown_method_is_other() {
        let ids = Ids {
            trace_id: [1; 16],
            span_id: [2; 8],
            sampled: true,
        };
        let mut scratch = [0u8; 36];
        for (method, name) in [("PATCH", "PATCH"), ("BREW", "_OTHER")] {
            let mut span = SpanData::server(ids, None, method, Value::Static("unmatched"));
            span.set("http.response.status_code", Value::Int(404));
            span.set("http.response.status_code", Value::Int(405));
            let (first, route) = span.name();
            assert_eq!(first, name);
            assert_eq!(
                route.map(|r| r.as_attribute(&mut scratch) == AttributeRef::Str("unmatched")),
                Some(true)
            );
            let attributes: Vec<_> = span
                .attributes()
                .map(|(key, value)| (key, format!("{:?}", value.as_attribute(&mut scratch))))
                .collect();
            assert_eq!(
                attributes,
                [
                    ("http.route", r#"Str("unmatched")"#.to_owned()),
                    ("http.request.method", format!("Str({name:?})")),
                    ("http.response.status_code", "Int(405)".to_owned()),
                ]
            );
        }
    }

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
