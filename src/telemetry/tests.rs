//! The span layer and the exporter together: spans made with `tracing` under the layer, encoded
//! as the exporter sends them, decoded with the generated OTLP types as a collector would.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;
use tracing_subscriber::layer::SubscriberExt;

use super::export::{encode, Batching, Queue};
use super::spans::{with_data, Ids, Sampler, SpanLayer};

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

#[test]
fn a_traceparent_that_is_not_valid_starts_a_trace_of_our_own() {
    let theirs = "0af7651916cd43dd8448eb211c80319c";
    for bad in [
        "garbage".to_owned(),
        format!("00-{theirs}-b7ad6b7169203331"),
        format!("00-{}-b7ad6b7169203331-01", "0".repeat(32)),
        format!("00-{theirs}-0000000000000000-01"),
        format!("ff-{theirs}-b7ad6b7169203331-01"),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::try_from(&bad).unwrap());
        let request = exported(1.0, || {
            let span = tracing::info_span!("request");
            super::continue_trace(&span, &headers);
        });
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 1, "{bad}");
        assert!(spans[0].parent_span_id.is_empty(), "{bad}");
        assert_ne!(hex::encode(&spans[0].trace_id), theirs, "{bad}");
        assert_ne!(spans[0].trace_id, [0; 16], "{bad}");
    }
}

#[test]
fn an_outgoing_call_names_the_current_span_and_none_outside_a_trace() {
    let mut sent = None;
    let request = exported(1.0, || {
        tracing::info_span!("request").in_scope(|| sent = Some(super::trace_headers()));
    });
    let span = &request.resource_spans[0].scope_spans[0].spans[0];
    let sent = sent.unwrap();
    assert_eq!(
        sent["traceparent"],
        format!(
            "00-{}-{}-01",
            hex::encode(&span.trace_id),
            hex::encode(&span.span_id)
        )
    );
    assert!(super::trace_headers().is_empty(), "no span, no header");
}
