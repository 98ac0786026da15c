//! The service's Prometheus series, one registry per `AppState` (no global recorder: every test
//! app has its own). Imports nothing of the crate, so every layer may record into it. Labels are
//! bounded: routes are templates (or `unmatched`), results and sources are fixed words.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignInLabels {
    pub method: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutboxLabels {
    pub outbox: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: &'static str,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every series; cheap to clone (handles to shared atomics).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub sign_ins: Family<SignInLabels, Counter>,
    pub sign_ups: Family<SourceLabels, Counter>,
    pub hash_duration: Histogram,
    pub hash_waiting: Gauge,
    pub db_pool: Family<StateLabels, Gauge>,
    pub outbox_pending: Family<OutboxLabels, Gauge>,
    pub messages_sent: Family<ResultLabels, Counter>,
    pub events_published: Counter,
    pub rate_limit_backend_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "http_requests",
            "HTTP requests by route template and status",
            http_requests.clone(),
        );
        let http_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            http_duration.clone(),
        );
        let sign_ins = Family::<SignInLabels, Counter>::default();
        r.register(
            "users_sign_ins",
            "Sign-in attempts by method and result",
            sign_ins.clone(),
        );
        let sign_ups = Family::<SourceLabels, Counter>::default();
        r.register(
            "users_sign_ups",
            "Accounts created, by source",
            sign_ups.clone(),
        );
        let hash_duration = Histogram::new(exponential_buckets(0.002, 2.0, 12));
        r.register(
            "password_hash_duration_seconds",
            "Time of one argon2id hash or verification",
            hash_duration.clone(),
        );
        let hash_waiting = Gauge::default();
        r.register(
            "password_hash_waiting",
            "Requests queued for a hashing slot",
            hash_waiting.clone(),
        );
        let db_pool = Family::<StateLabels, Gauge>::default();
        r.register(
            "db_pool_connections",
            "Database pool connections by state",
            db_pool.clone(),
        );
        let outbox_pending = Family::<OutboxLabels, Gauge>::default();
        r.register(
            "outbox_pending",
            "Outbox rows waiting to be sent",
            outbox_pending.clone(),
        );
        let messages_sent = Family::<ResultLabels, Counter>::default();
        r.register(
            "messages_sent",
            "Mail delivery attempts by outcome",
            messages_sent.clone(),
        );
        let events_published = Counter::default();
        r.register(
            "events_published",
            "Events published to the broker",
            events_published.clone(),
        );
        let rate_limit_backend_errors = Counter::default();
        r.register(
            "rate_limit_backend_errors",
            "Budget checks Redis could not answer (served: the limit fails open)",
            rate_limit_backend_errors.clone(),
        );
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("users_service_build_info", "The running build", build_info);
        // every fixed-label series exists from the start, at zero
        for result in ["sent", "retry", "abandoned"] {
            let _ = messages_sent.get_or_create(&ResultLabels { result });
        }
        for outbox in ["messages", "events"] {
            let _ = outbox_pending.get_or_create(&OutboxLabels { outbox });
        }
        Self {
            registry: Arc::new(r),
            http_requests,
            http_duration,
            sign_ins,
            sign_ups,
            hash_duration,
            hash_waiting,
            db_pool,
            outbox_pending,
            messages_sent,
            events_published,
            rate_limit_backend_errors,
        }
    }

    pub fn sign_in(&self, method: &'static str, result: &'static str) {
        self.sign_ins
            .get_or_create(&SignInLabels { method, result })
            .inc();
    }

    pub fn sign_up(&self, source: &'static str) {
        self.sign_ups.get_or_create(&SourceLabels { source }).inc();
    }

    pub fn message(&self, result: &'static str) {
        self.messages_sent
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}
