//! A request's trace while it is served: its server span and the innermost span open in it, in a
//! task-local of the request's task. Its database work and its hashing open child spans against
//! it, which leave for the exporter's queue when they end. No `tracing` span is involved: the
//! registry making two spans per GET me cost more than five per cent of its rate
//! (bench/PROFILE.md), and this costs a few hundred nanoseconds.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::http::Response;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;

use super::export::Queue;
use super::spans::{new_id, Ids, Sampler, SpanData, Value};

/// Where spans go, and which traces are kept.
pub struct Tracer {
    pub(super) queue: Arc<Queue>,
    sampler: Sampler,
}

impl Tracer {
    pub fn new(queue: Arc<Queue>, sampler: Sampler) -> Self {
        Self { queue, sampler }
    }

    /// A request's server span, named `<method> <route>`: it continues the caller's trace when
    /// there is one (`remote`, parent-based), else starts a trace sampled by its id.
    pub fn server_span(&'static self, remote: Option<Ids>, method: &str, route: Value) -> OpenSpan {
        let span_id = new_id::<8>();
        let (ids, parent) = match remote {
            Some(remote) => (Ids { span_id, ..remote }, Some(remote.span_id)),
            None => {
                let trace_id = new_id::<16>();
                let sampled = self.sampler.keeps(&trace_id);
                let ids = Ids {
                    trace_id,
                    span_id,
                    sampled,
                };
                (ids, None)
            }
        };
        OpenSpan {
            tracer: self,
            data: Some(SpanData::server(ids, parent, method, route)),
        }
    }
}

/// A span being recorded: it ends when dropped, and leaves for the exporter if its trace is
/// sampled.
pub struct OpenSpan {
    tracer: &'static Tracer,
    data: Option<SpanData>,
}

impl OpenSpan {
    /// `None` once it has ended.
    pub fn ids(&self) -> Option<Ids> {
        self.data.as_ref().map(|d| d.ids)
    }

    fn end(&mut self) {
        if let Some(mut data) = self.data.take().filter(|d| d.ids.sampled) {
            data.end = SystemTime::now();
            self.tracer.queue.push(data);
        }
    }
}

impl Drop for OpenSpan {
    fn drop(&mut self) {
        self.end();
    }
}

/// A request's trace, in its task.
pub struct RequestTrace {
    server: RefCell<OpenSpan>,
    /// the innermost span open now: the parent of the next one, named by outgoing calls
    current: Cell<Ids>,
    tracer: &'static Tracer,
}

tokio::task_local! {
    static TRACE: RequestTrace;
}

/// A request's response future, in its trace.
pub type InRequest<F> = TaskLocalFuture<RequestTrace, Responded<F>>;

/// Runs `response` (a request's) in the trace `server` is the span of: spans opened inside are
/// its descendants; `server` gets the response's status and ends with it (or when dropped).
pub fn in_request<F, B, E>(server: OpenSpan, response: F) -> InRequest<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    let current = server.ids().unwrap_or(Ids {
        trace_id: [0; 16],
        span_id: [0; 8],
        sampled: false,
    });
    let trace = RequestTrace {
        tracer: server.tracer,
        server: RefCell::new(server),
        current: Cell::new(current),
    };
    TRACE.scope(trace, Responded { response })
}

pin_project! {
    /// A response future that ends its request's server span with its status.
    pub struct Responded<F> {
        #[pin]
        response: F,
    }
}

impl<F, B, E> Future for Responded<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let poll = self.project().response.poll(cx);
        if let Poll::Ready(result) = &poll {
            let _ = TRACE.try_with(|t| {
                let mut server = t.server.borrow_mut();
                if let (Ok(response), Some(data)) = (result, server.data.as_mut()) {
                    data.set(
                        "http.response.status_code",
                        Value::Int(i64::from(response.status().as_u16())),
                    );
                }
                server.end();
            });
        }
        poll
    }
}

/// The innermost open span of the current request's trace, if any.
pub fn current() -> Option<Ids> {
    TRACE.try_with(|t| t.current.get()).ok()
}

/// Records an attribute of the current request's server span (nothing outside a request).
pub fn annotate(key: &'static str, value: impl Into<Value>) {
    let _ = TRACE.try_with(|t| {
        if let Some(data) = t.server.borrow_mut().data.as_mut() {
            data.set(key, value.into());
        }
    });
}

/// A span named `name`, a child of the innermost span open in the current request; `None`
/// outside a request or when its trace is not sampled. It ends when dropped, wherever that is
/// (a hash ends on the blocking pool).
pub fn child_span(name: &'static str) -> Option<OpenSpan> {
    TRACE
        .try_with(|t| {
            let parent = t.current.get();
            parent.sampled.then(|| {
                let ids = Ids {
                    span_id: new_id::<8>(),
                    ..parent
                };
                OpenSpan {
                    tracer: t.tracer,
                    data: Some(SpanData::new(ids, Some(parent.span_id), name)),
                }
            })
        })
        .ok()
        .flatten()
}

/// `work` in a span of database work named `name` (attribute `db.system` = `postgresql`), a child
/// of the current request's innermost span, and the parent of the spans `work` opens.
pub fn db_span<F: Future>(name: &'static str, work: F) -> InSpan<F> {
    InSpan {
        work,
        name,
        span: None,
        opened: false,
    }
}

pin_project! {
    /// A future in a span of its own (`db_span`).
    pub struct InSpan<F> {
        #[pin]
        work: F,
        name: &'static str,
        span: Option<OpenSpan>,
        opened: bool,
    }
}

impl<F: Future> Future for InSpan<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // opened on the first poll: that is when the work starts, inside the request's task
        if !*this.opened {
            *this.opened = true;
            *this.span = child_span(this.name).map(|mut span| {
                if let Some(data) = span.data.as_mut() {
                    data.set("db.system", Value::Static("postgresql"));
                }
                span
            });
        }
        let Some(ids) = this.span.as_ref().and_then(OpenSpan::ids) else {
            return this.work.poll(cx);
        };
        let outer = TRACE.try_with(|t| t.current.replace(ids)).ok();
        let poll = this.work.poll(cx);
        if let Some(outer) = outer {
            let _ = TRACE.try_with(|t| t.current.set(outer));
        }
        if poll.is_ready() {
            *this.span = None;
        }
        poll
    }
}
