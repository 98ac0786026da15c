//! Request traces and the exporter together: spans made as a request makes them (its server span,
//! database and hashing children), encoded as the exporter sends them, decoded with the generated
//! OTLP types as a collector would.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;

use super::context::{self, Tracer};
use super::export::{encode, Batching, Queue};
use super::spans::{Ids, Sampler, Value};

/// The spans of one request served by `work` (continuing `remote`), as a collector decodes them.
fn exported<F: Future<Output = ()>>(
    ratio: f64,
    remote: Option<Ids>,
    work: F,
) -> ExportTraceServiceRequest {
    let queue = Arc::new(Queue::new(
        Batching {
            max_queue: 64,
            max_batch: 64,
            delay: Duration::ZERO,
            timeout: Duration::from_secs(1),
        },
        1,
    ));
    let tracer: &'static Tracer =
        Box::leak(Box::new(Tracer::new(queue.clone(), Sampler::new(ratio))));
    let server = tracer.server_span(remote, "GET", Value::Static("/api/v1/private/users/me"));
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(context::in_request(server, async move {
            work.await;
            Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
        }))
        .unwrap();
    let mut spans = Vec::new();
    queue.take(&mut spans);
    ExportTraceServiceRequest::decode(encode("users-test", &spans).as_slice())
        .expect("a valid OTLP request")
}

fn attribute(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<Any> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|v| v.value)
}

fn text(value: &str) -> Option<Any> {
    Some(Any::StringValue(value.into()))
}

#[test]
fn spans_leave_as_otlp_with_their_names_attributes_and_parents() {
    let request = exported(1.0, None, async {
        context::annotate(
            "user_id",
            uuid::Uuid::from_u128(0x0193_0c4e_77aa_7b3c_9d2e_1f00_aa55_cc01),
        );
        context::db_span("read", async {
            context::db_span("find", async {}).await;
        })
        .await;
        drop(context::child_span("password.verify"));
    });
    let resource = &request.resource_spans[0];
    let service = &resource.resource.as_ref().unwrap().attributes[0];
    assert_eq!(service.key, "service.name");
    assert_eq!(service.value.as_ref().unwrap().value, text("users-test"));
    let scope = &resource.scope_spans[0];
    assert_eq!(scope.scope.as_ref().unwrap().name, "users-service");
    // each leaves when it ends: the innermost first, the server span last
    let [find, read, verify, server] = &scope.spans[..] else {
        panic!("four spans: {:?}", scope.spans);
    };
    assert_eq!(server.name, "GET /api/v1/private/users/me");
    assert_eq!(server.kind, 2, "server");
    assert!(server.parent_span_id.is_empty(), "a root");
    assert_eq!(server.flags, 1, "sampled");
    assert!(server.end_time_unix_nano >= server.start_time_unix_nano);
    assert!(server.start_time_unix_nano > 0);
    assert_eq!(attribute(server, "http.request.method"), text("GET"));
    assert_eq!(
        attribute(server, "http.route"),
        text("/api/v1/private/users/me")
    );
    assert_eq!(
        attribute(server, "http.response.status_code"),
        Some(Any::IntValue(200))
    );
    assert_eq!(
        attribute(server, "user_id"),
        text("01930c4e-77aa-7b3c-9d2e-1f00aa55cc01")
    );
    assert_eq!(server.attributes.len(), 4, "{:?}", server.attributes);
    assert_eq!(server.trace_id.len(), 16);
    assert_eq!(server.span_id.len(), 8);
    for (span, name, parent) in [(read, "read", server), (find, "find", read)] {
        assert_eq!(span.name, name);
        assert_eq!(span.kind, 1, "internal");
        assert_eq!(span.trace_id, server.trace_id);
        assert_eq!(span.parent_span_id, parent.span_id, "{name}");
        assert_eq!(attribute(span, "db.system"), text("postgresql"));
        assert!(span.start_time_unix_nano >= parent.start_time_unix_nano);
        assert!(span.end_time_unix_nano <= parent.end_time_unix_nano);
    }
    assert_ne!(read.span_id, server.span_id);
    assert_ne!(find.span_id, read.span_id);
    // the database span had ended: the hash is the server span's child again
    assert_eq!(verify.name, "password.verify");
    assert_eq!(verify.parent_span_id, server.span_id);
    assert!(verify.attributes.is_empty());
}

#[test]
fn a_callers_trace_is_continued_and_an_unsampled_one_is_not_exported() {
    let remote = |sampled| {
        Some(Ids {
            trace_id: [7; 16],
            span_id: [9; 8],
            sampled,
        })
    };
    let work = || async { drop(context::child_span("password.verify")) };
    let request = exported(0.0, remote(true), work());
    let spans = &request.resource_spans[0].scope_spans[0].spans;
    assert_eq!(spans.len(), 2, "the caller's decision wins over the ratio");
    assert!(spans.iter().all(|s| s.trace_id == [7; 16]));
    assert_eq!(spans[1].parent_span_id, [9; 8]);
    assert_eq!(spans[0].parent_span_id, spans[1].span_id);

    let request = exported(1.0, remote(false), work());
    assert!(request.resource_spans[0].scope_spans[0].spans.is_empty());
    // nothing recorded at a ratio of 0 without a caller
    let request = exported(0.0, None, work());
    assert!(request.resource_spans[0].scope_spans[0].spans.is_empty());
}

#[test]
fn a_traceparent_that_is_not_valid_starts_a_trace_of_our_own() {
    let theirs = "0af7651916cd43dd8448eb211c80319c";
    let parent = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::try_from(value).unwrap());
        super::remote_parent(&headers)
    };
    assert_eq!(
        parent(&format!("00-{theirs}-b7ad6b7169203331-01")),
        Some(Ids {
            trace_id: hex::decode(theirs).unwrap().try_into().unwrap(),
            span_id: hex::decode("b7ad6b7169203331").unwrap().try_into().unwrap(),
            sampled: true,
        })
    );
    assert_eq!(super::remote_parent(&HeaderMap::new()), None);
    for bad in [
        "garbage".to_owned(),
        format!("00-{theirs}-b7ad6b7169203331"),
        format!("00-{}-b7ad6b7169203331-01", "0".repeat(32)),
        format!("00-{theirs}-0000000000000000-01"),
        format!("ff-{theirs}-b7ad6b7169203331-01"),
    ] {
        assert_eq!(parent(&bad), None, "{bad}");
    }
    let request = exported(1.0, parent("garbage"), async {});
    let spans = &request.resource_spans[0].scope_spans[0].spans;
    assert_eq!(spans.len(), 1);
    assert!(spans[0].parent_span_id.is_empty());
    assert_ne!(spans[0].trace_id, [0; 16]);
}

#[test]
fn an_outgoing_call_names_the_current_span_and_none_outside_a_trace() {
    let mut sent = Vec::new();
    let request = exported(1.0, None, async {
        sent.push(super::trace_headers());
        context::db_span("read", async { sent.push(super::trace_headers()) }).await;
    });
    let spans = &request.resource_spans[0].scope_spans[0].spans;
    let [read, server] = &spans[..] else {
        panic!("two spans: {spans:?}");
    };
    for (headers, span) in sent.iter().zip([server, read]) {
        assert_eq!(
            headers["traceparent"],
            format!(
                "00-{}-{}-01",
                hex::encode(&span.trace_id),
                hex::encode(&span.span_id)
            )
        );
    }
    assert!(super::trace_headers().is_empty(), "no request, no header");
}
