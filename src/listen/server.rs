//! The HTTP side of the listener: hyper 1 (HTTP/1.1, keep-alive) on the worker's tokio
//! runtime. No PostgreSQL here: each request that routes is read (bounded), handed to the
//! main thread over a channel with a oneshot for the answer, and the main thread is woken
//! (`wake`, as the transport does). Requests that cannot be served — no route, a body too
//! large, too many in flight — are answered here without waking anyone.

use crate::logic::webhook::{self, NoRoute};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Request as HttpRequest, Response as HttpResponse, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

/// A routed request for the main thread.
pub struct Request {
    pub route: webhook::Route,
    /// Header names in lower case; values that are not text are left out.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub reply: oneshot::Sender<Reply>,
}

/// The main thread's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self { status, content_type: "application/json", body: body.to_string() }
    }

    pub fn error(status: u16, message: &str) -> Self {
        Self::json(status, serde_json::json!({ "error": message }))
    }
}

/// What the listener takes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body: usize,
    /// Requests read or waiting for the main thread at once; more get 503.
    pub max_in_flight: usize,
    /// Longest time to read a request's headers, and again its body.
    pub read_timeout: Duration,
}

/// Binds `addr` (on the caller's thread, so a taken port is reported at once) and serves it
/// on `rt`. Requests go to `tx`, followed by a call of `wake`.
pub fn start(
    rt: &tokio::runtime::Handle,
    addr: SocketAddr,
    limits: Limits,
    tx: mpsc::Sender<Request>,
    wake: fn(),
) -> std::io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let bound = std_listener.local_addr()?;
    let listener = {
        let _in = rt.enter();
        tokio::net::TcpListener::from_std(std_listener)?
    };
    let permits = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (tx, permits) = (tx.clone(), permits.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| serve(req, limits, tx.clone(), permits.clone(), wake));
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.read_timeout)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

type Answer = HttpResponse<Full<Bytes>>;

async fn serve(
    req: HttpRequest<Incoming>,
    limits: Limits,
    tx: mpsc::Sender<Request>,
    permits: Arc<Semaphore>,
    wake: fn(),
) -> Result<Answer, std::convert::Infallible> {
    Ok(answer(req, limits, tx, permits, wake).await)
}

async fn answer(
    req: HttpRequest<Incoming>,
    limits: Limits,
    tx: mpsc::Sender<Request>,
    permits: Arc<Semaphore>,
    wake: fn(),
) -> Answer {
    let target = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let route = match webhook::route(req.method().as_str(), target) {
        Ok(r) => r,
        Err(NoRoute::NotFound) => return reply(Reply::error(404, "not found")),
        Err(NoRoute::MethodNotAllowed(m)) => {
            let mut r = reply(Reply::error(405, "method not allowed"));
            r.headers_mut().insert("allow", HeaderValue::from_static(m));
            return r;
        }
    };
    // Full: nothing is read or queued, and the caller should come back.
    let Ok(_permit) = permits.try_acquire_owned() else { return busy() };
    let declared = req.headers().get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body as u64) {
        return reply(Reply::error(413, "body too large"));
    }
    let headers: Vec<(String, String)> =
        req.headers().iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
    let read = tokio::time::timeout(limits.read_timeout, Limited::new(req.into_body(), limits.max_body).collect());
    let body = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return reply(Reply::error(413, "body too large")),
        Ok(Err(_)) => return reply(Reply::error(400, "the body could not be read")),
        Err(_) => return reply(Reply::error(408, "the body took too long")),
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    if tx.send(Request { route, headers, body, reply: reply_tx }).is_err() {
        return busy();
    }
    wake();
    match reply_rx.await {
        Ok(r) => reply(r),
        // The main thread dropped the request (it is stopping): nothing was applied.
        Err(_) => busy(),
    }
}

fn reply(r: Reply) -> Answer {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut answer = HttpResponse::new(Full::new(Bytes::from(r.body)));
    *answer.status_mut() = status;
    answer.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(r.content_type));
    answer
}

fn busy() -> Answer {
    let mut r = reply(Reply::error(503, "busy, try again"));
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    r
}
