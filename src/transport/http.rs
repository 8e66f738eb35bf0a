//! One HTTP exchange: a request as plain data in, an [`Answer`] out. Failures below HTTP
//! (timeouts, refused or dropped connections, oversized responses) become an answer without
//! a status, in words that name the cause but never a header value (secrets travel there).

use crate::logic::delivery::Answer;
use std::time::{Duration, Instant};
use tracing::Instrument;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_uppercase().as_str() {
            "GET" => Self::Get,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// A JSON body, sent with `Content-Type: application/json`.
    pub body: Option<String>,
}

impl Request {
    pub fn new(method: Method, url: String) -> Self {
        Self { method, url, headers: Vec::new(), body: None }
    }
}

/// A client with one timeout (for the whole exchange) and a cap on response bodies.
#[derive(Clone)]
pub struct Client {
    inner: reqwest::Client,
    timeout: Duration,
    max_body: usize,
}

impl Client {
    pub fn new(timeout: Duration, max_body: usize) -> Result<Self, String> {
        let inner = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("pg_syncbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { inner, timeout, max_body })
    }

    /// One exchange, in a `request` span (debug level: method and URL without its query,
    /// which may carry a cursor or a key) that logs its outcome.
    pub async fn send(&self, req: &Request) -> Answer {
        let url = req.url.split(['?', '#']).next().unwrap_or_default();
        let span = tracing::debug_span!("request", method = req.method.name(), url);
        async {
            let started = Instant::now();
            let answer = self.exchange(req).await;
            let ms = started.elapsed().as_millis();
            match (answer.status, &answer.error) {
                (Some(status), _) => tracing::debug!("HTTP {status} in {ms} ms, {} bytes", answer.body.len()),
                (None, error) => tracing::debug!("{} (after {ms} ms)", error.as_deref().unwrap_or("no response")),
            }
            answer
        }
        .instrument(span)
        .await
    }

    async fn exchange(&self, req: &Request) -> Answer {
        let method = reqwest::Method::from_bytes(req.method.name().as_bytes()).expect("a known method");
        let mut builder = self.inner.request(method, &req.url);
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &req.body {
            builder = builder.header("content-type", "application/json").body(body.clone());
        }
        let mut resp = match builder.send().await {
            Ok(r) => r,
            Err(e) => return failure(self.describe(&e)),
        };
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let retry_after = header("retry-after");
        let next_link = header("link").as_deref().and_then(crate::logic::delivery::next_link);
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.max_body {
                        return failure(format!(
                            "response larger than {} bytes (HTTP {status}); raise the link's max_response_bytes",
                            self.max_body
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return failure(self.describe(&e)),
            }
        }
        Answer {
            status: Some(status),
            body: scrub(String::from_utf8_lossy(&body).into_owned(), &req.headers),
            retry_after,
            error: None,
            next_link,
        }
    }

    fn describe(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            format!("timed out after {} ms", self.timeout.as_millis())
        } else if e.is_connect() {
            format!("cannot connect: {}", root_cause(e))
        } else {
            format!("request failed: {}", root_cause(e))
        }
    }
}

/// The text with every header value we sent (auth secrets among them) masked: a remote that
/// repeats a credential in its error message must not get it into events or logs.
fn scrub(mut text: String, headers: &[(String, String)]) -> String {
    for (_, value) in headers.iter().filter(|(_, v)| v.len() >= 6) {
        if text.contains(value.as_str()) {
            text = text.replace(value.as_str(), "***");
        }
    }
    text
}

fn failure(error: String) -> Answer {
    Answer { error: Some(error), ..Default::default() }
}

/// The innermost error's text ("connection refused", "connection reset by peer", ...).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
