//! The span exporter: closed spans wait in a bounded queue and leave in batches, as OTLP/HTTP
//! protobuf, from a thread of their own. A request only pushes onto the queue; when the queue is
//! full (the collector down or slow) spans are dropped, never waited for. Shutting down sends what
//! is queued.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

use super::spans::{AttributeRef, SpanData};

/// When and how much to send; the standard `OTEL_BSP_*` variables override the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// spans kept at most while waiting to leave
    pub max_queue: usize,
    /// spans per POST at most
    pub max_batch: usize,
    /// a batch leaves at the latest this long after the previous one
    pub delay: Duration,
    /// a POST gives up after this long (its spans are dropped)
    pub timeout: Duration,
}

impl Batching {
    /// Bigger batches than the SDK's (512 of 2 048): at thousands of requests a second a POST per
    /// 512 spans took a third of the exporter's CPU.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        let number = |name: &str, default: u64| {
            var(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        let max_queue = number("OTEL_BSP_MAX_QUEUE_SIZE", 8192) as usize;
        Self {
            max_queue,
            max_batch: (number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 2048) as usize).min(max_queue),
            delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5000)),
            timeout: Duration::from_millis(number("OTEL_BSP_EXPORT_TIMEOUT", 5000)),
        }
    }
}

/// One worker thread's part of the queue, on a cache line of its own: with one shared vector the
/// workers' pushes fought over its lock's line, and that was a fifth of what tracing cost a request.
#[derive(Default)]
#[repr(align(128))]
struct Shard(Mutex<Vec<SpanData>>);

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Vec<SpanData>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closed spans on their way out.
pub struct Queue {
    shards: Box<[Shard]>,
    /// spans a shard holds at most (the queue's bound shared out)
    per_shard: usize,
    /// a shard wakes the exporter each time it has gathered this many more spans
    wake_every: usize,
    /// shutdown has begun
    closing: Mutex<bool>,
    wake: Condvar,
    batching: Batching,
}

thread_local! {
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

impl Queue {
    /// A queue in `shards` parts (one per worker thread).
    pub fn new(batching: Batching, shards: usize) -> Self {
        let shards = shards.clamp(1, batching.max_batch);
        Self {
            shards: (0..shards).map(|_| Shard::default()).collect(),
            per_shard: batching.max_queue.div_ceil(shards),
            wake_every: (batching.max_batch / shards).max(1),
            closing: Mutex::new(false),
            wake: Condvar::new(),
            batching,
        }
    }

    /// Queues a closed span, or drops it when its shard is full.
    pub fn push(&self, span: SpanData) {
        let shard = &self.shards[SHARD.with(|n| *n) % self.shards.len()];
        let mut spans = shard.lock();
        if spans.len() >= self.per_shard {
            return;
        }
        spans.push(span);
        let wake = spans.len() % self.wake_every == 0;
        drop(spans);
        if wake {
            // under the lock the exporter waits on: it cannot miss this between its check and its wait
            let _closing = self.lock_closing();
            self.wake.notify_one();
        }
    }

    fn lock_closing(&self) -> MutexGuard<'_, bool> {
        self.closing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn queued(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Waits until a batch is full, the delay has passed or shutdown began, then moves what is
    /// queued into `out`; true when shutting down.
    pub(super) fn take(&self, out: &mut Vec<SpanData>) -> bool {
        let deadline = Instant::now() + self.batching.delay;
        let mut closing = self.lock_closing();
        while !*closing && self.queued() < self.batching.max_batch {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            closing = self
                .wake
                .wait_timeout(closing, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let closing = *closing;
        for shard in self.shards.iter() {
            out.append(&mut shard.lock());
        }
        closing
    }

    fn close(&self) {
        *self.lock_closing() = true;
        self.wake.notify_one();
    }
}

/// The exporting thread; dropping it sends what is queued and waits for that.
pub struct Exporter {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Starts the thread posting to `url` (the collector's `/v1/traces`).
    pub fn start(queue: Arc<Queue>, url: String, service_name: String) -> std::io::Result<Self> {
        let thread = std::thread::Builder::new()
            .name("trace-export".into())
            .spawn({
                let queue = queue.clone();
                move || export_until_closed(&queue, &url, &service_name)
            })?;
        Ok(Self {
            queue,
            thread: Some(thread),
        })
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn export_until_closed(queue: &Queue, url: &str, service_name: &str) {
    let batching = queue.batching;
    let client = match reqwest::blocking::Client::builder()
        .timeout(batching.timeout)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "trace exporter could not start; spans are dropped");
            return;
        }
    };
    let mut spans = Vec::with_capacity(batching.max_queue);
    let mut failing = false;
    // while the collector fails, one batch is tried per schedule delay and the others are
    // dropped before they cost an encoding
    let mut next_try = Instant::now();
    loop {
        let closing = queue.take(&mut spans);
        for batch in spans.chunks(batching.max_batch) {
            if failing && Instant::now() < next_try {
                break;
            }
            let body = encode(service_name, batch);
            let sent = client
                .post(url)
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .and_then(|r| r.error_for_status());
            match sent {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("trace collector answers again");
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e.without_url(), "trace export failed; spans are dropped until the collector answers");
                }
                Err(_) => {}
            }
            if failing {
                next_try = Instant::now() + batching.delay;
            }
        }
        if closing {
            return;
        }
        spans.clear();
    }
}

// OTLP's protobuf, written straight from the spans. The generated message types would first copy
// every span into owned strings and vectors (two allocations per attribute), then encode that
// copy: that took twice the exporter's CPU. Field numbers are those of
// opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto; the tests decode what
// this writes with those generated types.

/// One `ExportTraceServiceRequest` with `spans`, under the resource `service.name`.
pub fn encode(service_name: &str, spans: &[SpanData]) -> Vec<u8> {
    // ScopeSpans.spans (2), each span's length first
    let mut body = Vec::with_capacity(spans.len() * 160);
    let mut scratch = Vec::with_capacity(256);
    for data in spans {
        scratch.clear();
        encode_span(data, &mut scratch);
        put_bytes(&mut body, 2, &scratch);
    }
    let mut scope = Vec::with_capacity(64);
    put_bytes(&mut scope, 1, b"users-service");
    put_bytes(&mut scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
    let mut resource = Vec::with_capacity(64);
    put_key_value(
        &mut resource,
        1,
        "service.name",
        AttributeRef::Str(service_name),
    );
    // ScopeSpans: scope (1), then the spans
    let scope_spans_len = field_len(scope.len()) + body.len();
    // ResourceSpans: resource (1), scope_spans (2)
    let resource_spans_len = field_len(resource.len()) + field_len(scope_spans_len);
    let mut out = Vec::with_capacity(field_len(resource_spans_len));
    // ExportTraceServiceRequest.resource_spans (1)
    put_header(&mut out, 1, resource_spans_len);
    put_bytes(&mut out, 1, &resource);
    put_header(&mut out, 2, scope_spans_len);
    put_bytes(&mut out, 1, &scope);
    out.extend_from_slice(&body);
    out
}

fn encode_span(data: &SpanData, buf: &mut Vec<u8>) {
    let nanos = |t: std::time::SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    };
    put_bytes(buf, 1, &data.ids.trace_id);
    put_bytes(buf, 2, &data.ids.span_id);
    if let Some(parent) = &data.parent {
        put_bytes(buf, 4, parent);
    }
    let mut scratch = [0u8; 36];
    match data.name() {
        (name, Some(route)) => {
            let route = match route.as_attribute(&mut scratch) {
                AttributeRef::Str(route) => route,
                AttributeRef::Int(_) => "",
            };
            put_header(buf, 5, name.len() + 1 + route.len());
            buf.extend_from_slice(name.as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(route.as_bytes());
        }
        (name, None) => put_bytes(buf, 5, name.as_bytes()),
    }
    // SPAN_KIND_SERVER = 2, SPAN_KIND_INTERNAL = 1
    encode_key(6, WireType::Varint, buf);
    encode_varint(if data.server { 2 } else { 1 }, buf);
    encode_key(7, WireType::SixtyFourBit, buf);
    buf.extend_from_slice(&nanos(data.start).to_le_bytes());
    encode_key(8, WireType::SixtyFourBit, buf);
    buf.extend_from_slice(&nanos(data.end).to_le_bytes());
    for (key, value) in data.attributes() {
        put_key_value(buf, 9, key, value.as_attribute(&mut scratch));
    }
    // W3C trace flags: sampled (only sampled spans are exported)
    encode_key(16, WireType::ThirtyTwoBit, buf);
    buf.extend_from_slice(&1u32.to_le_bytes());
}

/// A length-delimited field of `len` bytes, header included.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn put_header(buf: &mut Vec<u8>, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn put_bytes(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    put_header(buf, tag, bytes.len());
    buf.extend_from_slice(bytes);
}

/// `AnyValue`'s one field (a oneof: written even when empty).
fn any_value_len(value: AttributeRef<'_>) -> usize {
    match value {
        AttributeRef::Str(s) => field_len(s.len()),
        AttributeRef::Int(i) => 1 + encoded_len_varint(i as u64),
    }
}

/// A `KeyValue` as field `tag`.
fn put_key_value(buf: &mut Vec<u8>, tag: u32, key: &str, value: AttributeRef<'_>) {
    let any = any_value_len(value);
    put_header(buf, tag, field_len(key.len()) + field_len(any));
    put_bytes(buf, 1, key.as_bytes());
    put_header(buf, 2, any);
    match value {
        AttributeRef::Str(s) => put_bytes(buf, 1, s.as_bytes()),
        AttributeRef::Int(i) => {
            encode_key(3, WireType::Varint, buf);
            encode_varint(i as u64, buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::spans::Ids;

    fn closed(n: u8) -> SpanData {
        let ids = Ids {
            trace_id: [n; 16],
            span_id: [n; 8],
            sampled: true,
        };
        SpanData::new(ids, None, "x")
    }

    #[test]
    fn a_full_queue_drops_spans_and_a_full_batch_leaves_at_once() {
        let queue = Queue::new(
            Batching {
                max_queue: 4,
                max_batch: 2,
                delay: Duration::from_secs(3600),
                timeout: Duration::from_secs(1),
            },
            1,
        );
        for n in 0..6 {
            queue.push(closed(n));
        }
        // four queued, two dropped; the batch is full, so no waiting for the hour-long delay
        let mut taken = Vec::new();
        let closing = queue.take(&mut taken);
        assert_eq!(
            taken.iter().map(|s| s.ids.span_id[0]).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert!(!closing);
        taken.clear();
        queue.push(closed(9));
        queue.close();
        let closing = queue.take(&mut taken);
        assert_eq!(taken.len(), 1);
        assert!(closing, "closing wakes the exporter with what is left");
    }

    /// A collector answering 503 to every POST, counting them.
    fn failing_collector() -> (String, Arc<AtomicUsize>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let posts = Arc::new(AtomicUsize::new(0));
        let counted = posts.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let _ = reader.read_exact(&mut vec![0; length]);
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                );
            }
        });
        (url, posts)
    }

    #[test]
    fn a_failing_collector_is_tried_once_per_delay_and_the_rest_dropped() {
        let (url, posts) = failing_collector();
        let queue = Arc::new(Queue::new(
            Batching {
                max_queue: 64,
                max_batch: 1,
                delay: Duration::from_secs(3600),
                timeout: Duration::from_secs(5),
            },
            1,
        ));
        let exporter = Exporter::start(queue.clone(), url, "users-test".into()).unwrap();
        queue.push(closed(1));
        let waited = Instant::now();
        while posts.load(Ordering::SeqCst) == 0 {
            assert!(waited.elapsed() < Duration::from_secs(10), "no POST came");
            std::thread::sleep(Duration::from_millis(10));
        }
        // each of these is a full batch, taken at once, and dropped: the next try is an hour away
        for n in 2..6 {
            queue.push(closed(n));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(queue.queued(), 0, "the batches were taken");
        drop(exporter);
        assert_eq!(posts.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_variables_set_the_batches_and_a_batch_never_exceeds_the_queue() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            Batching::from_env(move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            })
        };
        let defaults = env(&[]);
        assert_eq!((defaults.max_queue, defaults.max_batch), (8192, 2048));
        assert_eq!(defaults.delay, Duration::from_secs(5));
        let set = env(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "nonsense"),
        ]);
        assert_eq!((set.max_queue, set.max_batch), (100, 100));
        assert_eq!(set.delay, Duration::from_millis(100));
        assert_eq!(set.timeout, Duration::from_secs(5));
    }
}
