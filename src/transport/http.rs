//! One HTTP exchange: a request as plain data in, an [`Answer`] out. Failures below HTTP
//! (timeouts, refused or dropped connections, oversized responses) become an answer without
//! a status, in words that name the cause but never a header value (secrets travel there).
//! Same-origin redirects are followed here; a redirect to another origin, or a host or
//! address outside `syncbridge.allowed_hosts`, is refused (a permanent failure).

use super::dns;
use super::redirect::{self, Step};
use super::scrub::Secrets;
use crate::logic::delivery::Answer;
use crate::logic::link_spec::redact_url;
use crate::logic::reach::AllowList;
use reqwest::RequestBuilder;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;
use url::Url;

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

/// A client with one timeout (for each exchange), a cap on response bodies and the
/// `syncbridge.allowed_hosts` it was made for (parsed on the worker's main thread: nothing
/// here reads a setting).
#[derive(Clone)]
pub struct Client {
    inner: reqwest::Client,
    timeout: Duration,
    max_body: usize,
    allowed: Arc<Allowed>,
}

/// The allow-list a client keeps to, or why it cannot keep to any (a setting that does not
/// parse sends nothing until it is fixed).
pub type Allowed = Result<AllowList, String>;

impl Client {
    pub fn new(timeout: Duration, max_body: usize, allowed: Allowed) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("pg_syncbridge/", env!("CARGO_PKG_VERSION")))
            // Followed by hand, same origin only (see `redirect`).
            .redirect(reqwest::redirect::Policy::none());
        if let Ok(list) = &allowed {
            if list.checks_addresses() {
                builder = builder.dns_resolver(Arc::new(dns::Filtered(Arc::new(list.clone()))));
            }
        }
        let inner = builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { inner, timeout, max_body, allowed: Arc::new(allowed) })
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
        let secrets = Secrets::of(&req.headers);
        let mut url = match Url::parse(&req.url) {
            Ok(url) => url,
            Err(e) => return refused(format!("invalid URL \"{}\": {e}", secrets.scrub(&redact_url(&req.url)))),
        };
        let (mut method, mut body) = (req.method, req.body.clone());
        let mut hops = 0;
        loop {
            match self.allowed.as_ref() {
                Ok(list) => {
                    if let Err(e) = list.check_url(&url) {
                        return refused(secrets.scrub(&e.0));
                    }
                }
                Err(e) => return failure(format!("nothing is sent: {e}")),
            }
            let resp = match self.request(&url, method, &req.headers, body.as_deref()).send().await {
                Ok(r) => r,
                Err(e) => return self.failed(&e, &secrets),
            };
            let status = resp.status().as_u16();
            let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let Some(location) = location.filter(|_| redirect::is_redirect(status)) else {
                return self.read(resp, url, &secrets).await;
            };
            match redirect::step(status, &location, &url, method, hops) {
                Step::Follow { url: next, method: m, keep_body } => {
                    (url, method) = (next, m);
                    body = body.filter(|_| keep_body);
                    hops += 1;
                }
                Step::Refuse(why) => return refused(secrets.scrub(&why)),
            }
        }
    }

    fn request(&self, url: &Url, method: Method, headers: &[(String, String)], body: Option<&str>) -> RequestBuilder {
        let method = reqwest::Method::from_bytes(method.name().as_bytes()).expect("a known method");
        let mut builder = self.inner.request(method, url.clone());
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = body {
            builder = builder.header("content-type", "application/json").body(body.to_owned());
        }
        builder
    }

    /// The answer of a response that is not a redirect to follow.
    async fn read(&self, mut resp: reqwest::Response, url: Url, secrets: &Secrets) -> Answer {
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let retry_after = header("retry-after");
        let etag = header("etag");
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
                Err(e) => return self.failed(&e, secrets),
            }
        }
        Answer {
            status: Some(status),
            body: secrets.scrub(&String::from_utf8_lossy(&body)),
            retry_after,
            error: None,
            next_link,
            refused: None,
            url: Some(url.to_string()),
            etag,
        }
    }

    /// An answer for a request that got no response: refused for good when the resolver
    /// found no allowed address, else a failure to retry.
    fn failed(&self, e: &reqwest::Error, secrets: &Secrets) -> Answer {
        if let Some(why) = dns::refusal(e) {
            return refused(secrets.scrub(&why));
        }
        let text = if e.is_timeout() {
            format!("timed out after {} ms", self.timeout.as_millis())
        } else if e.is_connect() {
            format!("cannot connect: {}", root_cause(e))
        } else {
            format!("request failed: {}", root_cause(e))
        };
        failure(secrets.scrub(&text))
    }
}

fn failure(error: String) -> Answer {
    Answer { error: Some(error), ..Default::default() }
}

fn refused(reason: String) -> Answer {
    Answer { refused: Some(reason), ..Default::default() }
}

/// The innermost error's text ("connection refused", "connection reset by peer", ...).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::delivery::{judge, Verdict};
    use crate::transport::testing::{block_on, respond, Server};
    use std::time::SystemTime;

    fn client(allowed: &str) -> Client {
        Client::new(Duration::from_secs(5), 1 << 20, AllowList::parse(allowed)).unwrap()
    }

    fn patch(url: String) -> Request {
        let mut req = Request::new(Method::Patch, url);
        req.headers = vec![("X-Api-Key".into(), "very-secret-123".into())];
        req.body = Some(r#"{"name":"Ada"}"#.into());
        req
    }

    #[test]
    fn a_redirect_to_another_origin_gets_neither_body_nor_headers() {
        let elsewhere = Server::start(|_, _| respond(200, &[], "{}"));
        let target = elsewhere.url("/steal");
        let origin = Server::start(move |_, _| respond(307, &[("location", &target)], ""));
        let answer = block_on(client("").send(&patch(origin.url("/t/1"))));
        assert!(elsewhere.seen().is_empty(), "the other origin was asked: {:?}", elsewhere.seen());
        let reason = answer.refused.clone().expect("refused");
        assert!(reason.contains(&elsewhere.url("/steal")) && reason.contains("another origin"), "{reason}");
        assert!(matches!(judge(&answer, 1, 0.0, SystemTime::now()), Verdict::Permanent { .. }));
    }

    #[test]
    fn same_origin_redirects_are_followed_with_the_method_the_status_calls_for() {
        let server = Server::start(|req, _| match req.target.as_str() {
            "/old" => respond(307, &[("location", "/new")], ""),
            "/see" => respond(303, &[("location", "/new")], ""),
            _ => respond(200, &[], r#"{"ok": true}"#),
        });
        let answer = block_on(client("").send(&patch(server.url("/old"))));
        assert_eq!(answer.status, Some(200));
        assert_eq!(answer.url.as_deref(), Some(server.url("/new").as_str()));
        let seen = server.seen();
        assert_eq!((seen[1].method.as_str(), seen[1].target.as_str()), ("PATCH", "/new"));
        assert_eq!(seen[1].body, r#"{"name":"Ada"}"#);
        assert_eq!(seen[1].header("x-api-key"), Some("very-secret-123"));
        block_on(client("").send(&patch(server.url("/see"))));
        let after_303 = server.seen().pop().unwrap();
        assert_eq!((after_303.method.as_str(), after_303.body.as_str()), ("GET", ""));
        assert_eq!(after_303.header("content-type"), None);
    }

    #[test]
    fn redirect_loops_end_after_five_hops() {
        let server = Server::start(|_, _| respond(302, &[("location", "/again")], ""));
        let answer = block_on(client("").send(&patch(server.url("/again"))));
        assert!(answer.refused.as_deref().is_some_and(|r| r.starts_with("more than 5 redirects")), "{answer:?}");
        assert_eq!(server.seen().len(), 6);
    }

    #[test]
    fn an_echoed_token_is_masked_also_without_its_scheme_word() {
        let server = Server::start(|_, _| respond(401, &[], r#"{"message": "token SUPERSECRET-123456 revoked"}"#));
        let mut req = Request::new(Method::Get, server.url("/t"));
        req.headers = vec![("Authorization".into(), "Bearer SUPERSECRET-123456".into())];
        let answer = block_on(client("").send(&req));
        assert_eq!(answer.body, r#"{"message": "token *** revoked"}"#);
    }

    #[test]
    fn hosts_and_resolved_addresses_outside_the_allow_list_are_refused_before_connecting() {
        let server = Server::start(|_, _| respond(200, &[], "[]"));
        let get = |url: String| Request::new(Method::Get, url);
        let by_ip = block_on(client("10.0.0.0/8").send(&get(server.url("/t"))));
        assert!(by_ip.refused.as_deref().is_some_and(|r| r.contains("not in syncbridge.allowed_hosts")), "{by_ip:?}");
        let by_name =
            block_on(client("localhost, 10.0.0.0/8").send(&get(format!("http://localhost:{}/t", server.port))));
        let reason = by_name.refused.expect("a name that resolves outside the ranges is refused");
        assert!(reason.contains("\"localhost\" resolves to"), "{reason}");
        let other_name = block_on(client("api.example.com").send(&get(format!("http://localhost:{}/t", server.port))));
        assert!(other_name.refused.is_some());
        assert!(server.seen().is_empty(), "a refused request reached the server");
        let allowed = block_on(client("127.0.0.0/8").send(&get(server.url("/t"))));
        assert_eq!(allowed.status, Some(200));
        let broken = Client::new(Duration::from_secs(5), 1024, AllowList::parse("10.0.0.0/99")).unwrap();
        let answer = block_on(broken.send(&get(server.url("/t"))));
        assert!(answer.error.as_deref().is_some_and(|e| e.contains("10.0.0.0/99")) && answer.refused.is_none());
        assert_eq!(server.seen().len(), 1);
    }
}
