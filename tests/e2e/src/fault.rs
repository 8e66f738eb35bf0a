//! An in-process HTTP server that plays a REST remote and can misbehave on demand: answer
//! 500 or 429 (with Retry-After) or 422, hang past the client's timeout, drop the connection
//! after reading the request (before or after storing the record), or answer with a huge
//! body. It records every request it reads, and counts the writes it carried out
//! (`writes_done`).
//!
//! As a store it keeps one collection per path segment: `POST /{c}` assigns an id and answers
//! 201 with the record, `GET`/`PATCH`/`PUT`/`DELETE /{c}/{id}`, `GET /{c}?field=value` filters, and
//! `POST /batch` takes the worker's batch requests (a `PUT` replaces the whole record, a `PATCH`
//! changes the fields it carries). With `wrap(key)` every answer of the
//! store comes inside an object under that key (`{"data": ...}`), as many APIs answer.
//! `remove(c, id)` deletes a record behind the sync's back; a `PATCH`/`PUT` of it then
//! answers 404, or 204 with no body in `Mode::NoContentForMissing`.
//! A route (`route(target, ...)`) answers one path and query with a fixed status, headers
//! and body before all of that: a redirect, or a page whose `Link` header or body names the
//! next one. `GET /{c}?page=n&per=m` answers one page
//! in an envelope that names the next one in its body: `{"data": [...], "links": {"next":
//! url or null}}`.
//!
//! It can also play a remote with other habits: one whose lists understand only its own
//! filter syntax (`filter[field]=value`) and ignore every other query parameter, answering
//! the first page of everything (`filters(FilterStyle::Bracket)`, `page_lists(per)`); one that
//! answers every create with the same id (`same_created_id`); and answers that come late or
//! not as JSON (`Mode::StoreThenDropAfter`, `Mode::StoreThenAnswer`). `POST /batch/{c}`
//! stores a batch's creates in collection `c` (plain `/batch` in `batch`).
//!
//! And it can play a remote that people use: `stamp(field)` has every write stamp a
//! modification time in `field` (RFC 3339 in UTC with microseconds, strictly increasing),
//! whoever makes it: the worker's creates and updates (single or batched), `insert`, and
//! `edit(c, id, fields)`, which changes fields of a record as a person would in the remote's
//! own UI. `cursor(param, field)` has lists answer only the records whose `field` is at or
//! after the value of the query parameter `param` (numbers compared as numbers, anything else
//! as text), oldest first, as remotes that serve "changed since" pulls do. With `etags()`,
//! answers about one record carry its version (`ETag`) and a conditional `PATCH`/`PUT`
//! (`If-Match`) of another version is answered 412. `calm()` ends
//! every fault at once (queued and standing modes, delays, slow answers, matching failures).

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Behave.
    Normal,
    /// Answer with this status and body (and Retry-After seconds), storing nothing.
    Status { code: u16, body: String, retry_after: Option<u64> },
    /// Answer only after a minute.
    Hang,
    /// Read the request, then close the connection without answering.
    Drop,
    /// Do what was asked, then close the connection without answering (a lost answer).
    StoreThenDrop,
    /// A 200 with a 4 MiB body.
    Huge,
    /// Do what was asked, wait this long, then close the connection without answering.
    StoreThenDropAfter(Duration),
    /// Do what was asked, then answer with this status and body (say, a 201 that is not JSON).
    StoreThenAnswer { code: u16, body: String },
    /// Behave, except that a `PATCH`/`PUT` of a record the store does not hold (deleted, or
    /// never there) answers 204 with an empty body instead of 404, as some remotes do.
    NoContentForMissing,
}

/// How the store's lists read their query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FilterStyle {
    /// `field=value` filters (json-server's way).
    #[default]
    Plain,
    /// Only `filter[field]=value` filters; other parameters are ignored, as many CMSs do.
    Bracket,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A fixed answer: status, headers, body.
type Route = (u16, Vec<(String, String)>, String);

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    /// Modes for the next requests, in order; then `always`.
    next: VecDeque<Mode>,
    always: Option<Mode>,
    store: BTreeMap<String, Vec<Value>>,
    next_id: u64,
    delay: Duration,
    wrap: Option<String>,
    /// Write requests whose body contains the text get the mode, before anything queued.
    matching: Vec<(String, Mode)>,
    /// Requests without this header (name, value) are answered 401.
    required: Option<(String, String)>,
    /// Fixed answers by path and query: status, headers, body.
    routes: BTreeMap<String, Route>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: usize,
    max_in_flight: usize,
    filters: FilterStyle,
    /// Lists always come in pages of this size (the first page unless `page` asks another).
    page_lists: Option<usize>,
    /// Every create is answered with this id (each record is stored under its own).
    same_created_id: Option<u64>,
    /// Answers to writes wait this long after the write is done.
    slow_answers: Duration,
    /// Every write stamps this field with the time (`stamp`).
    stamp_field: Option<String>,
    /// The last stamp given, in microseconds since the epoch: the next is later.
    last_stamp_us: i64,
    /// Lists answer only records whose field (`.1`) is at or after the value of the query
    /// parameter (`.0`).
    cursor: Option<(String, String)>,
    /// Write requests (not GETs) the store carried out with a 2xx.
    writes_done: usize,
    /// Answers about one record carry its version in `ETag` (its stamp), and a `PATCH`/`PUT`
    /// whose `If-Match` names another version is answered 412 (`etags`).
    etags: bool,
}

impl State {
    /// Stamps `record` with the time of this write, when the store stamps writes.
    fn stamp(&mut self, record: &mut Map<String, Value>) {
        let Some(field) = self.stamp_field.clone() else { return };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
        self.last_stamp_us = now.max(self.last_stamp_us + 1);
        record.insert(field, json!(rfc3339_micros(self.last_stamp_us)));
    }
}

/// A stamp of [`rfc3339_micros`] back to microseconds since the epoch (`None` for other text).
pub fn parse_rfc3339_micros(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 27 || b[4] != b'-' || b[10] != b'T' || b[19] != b'.' || b[26] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| text.get(from..to)?.parse::<i64>().ok();
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss, us) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 26)?);
    // Days since 1970-01-01 from a civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + us)
}

/// A time in microseconds since the epoch as RFC 3339 in UTC with six decimals
/// (`2026-11-30T15:42:55.123456Z`): stamps of the same width, so text order is time order.
pub fn rfc3339_micros(us: i64) -> String {
    let (secs, micros) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// Counts a request as in flight while it lives.
struct InFlight(Arc<Mutex<State>>);

impl InFlight {
    fn start(state: &Arc<Mutex<State>>) -> Self {
        let mut s = state.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

pub struct FaultServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

impl FaultServer {
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { port, state, _rt: rt }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next write requests (not GETs) get these modes, in order.
    pub fn then(&self, modes: impl IntoIterator<Item = Mode>) {
        self.state.lock().unwrap().next.extend(modes);
    }

    /// Every request from now on (after the queued ones) gets this mode.
    pub fn always(&self, mode: Mode) {
        self.state.lock().unwrap().always = Some(mode);
    }

    /// Write requests whose body contains `needle` get `mode` (a record the remote refuses
    /// while it takes the others).
    pub fn fail_matching(&self, needle: &str, mode: Mode) {
        self.state.lock().unwrap().matching.push((needle.to_owned(), mode));
    }

    /// Requests without the header `name: value` are answered 401 from now on.
    pub fn require_header(&self, name: &str, value: &str) {
        self.state.lock().unwrap().required = Some((name.to_owned(), value.to_owned()));
    }

    /// Every answer of the store from now on comes as `{key: answer}`.
    pub fn wrap(&self, key: &str) {
        self.state.lock().unwrap().wrap = Some(key.to_owned());
    }

    /// Requests for `target` (path and query, any method) get this answer, whatever the
    /// modes say: a redirect (`("location", url)`), or a page with a `link` header.
    pub fn route(&self, target: &str, status: u16, headers: &[(&str, &str)], body: &str) {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.state.lock().unwrap().routes.insert(target.to_owned(), (status, headers, body.to_owned()));
    }

    /// Each answer waits this long first.
    pub fn delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }

    /// How lists read their filters.
    pub fn filters(&self, style: FilterStyle) {
        self.state.lock().unwrap().filters = style;
    }

    /// Lists always come in pages of `per` records, in the `{"data", "links"}` envelope.
    pub fn page_lists(&self, per: usize) {
        self.state.lock().unwrap().page_lists = Some(per);
    }

    /// A broken remote: every create (single or in a batch) is answered with this id, while
    /// the records are stored under their own ids. `None` mends it.
    pub fn same_created_id(&self, id: Option<u64>) {
        self.state.lock().unwrap().same_created_id = id;
    }

    /// Answers to writes (not GETs) wait this long after the write is done: a worker killed
    /// meanwhile never learns what the remote did.
    pub fn slow_answers(&self, d: Duration) {
        self.state.lock().unwrap().slow_answers = d;
    }

    /// Stores a record as it is (it keeps its `id`, or gets the next one; stamped under
    /// `stamp`).
    pub fn insert(&self, collection: &str, record: Value) {
        let mut s = self.state.lock().unwrap();
        let mut r = record.as_object().cloned().unwrap_or_default();
        if !r.contains_key("id") {
            s.next_id += 1;
            r.insert("id".into(), json!(s.next_id));
        }
        s.stamp(&mut r);
        s.store.entry(collection.to_owned()).or_default().push(Value::Object(r));
    }

    /// Every write from now on (the worker's, `insert`'s, `edit`'s) sets `field` to the time
    /// of the write: RFC 3339 in UTC with microseconds, each stamp later than the last.
    pub fn stamp(&self, field: &str) {
        self.state.lock().unwrap().stamp_field = Some(field.to_owned());
    }

    /// Lists from now on answer only the records whose `field` is at or after the value of
    /// the query parameter `param` (when the request carries it), oldest first.
    pub fn cursor(&self, param: &str, field: &str) {
        self.state.lock().unwrap().cursor = Some((param.to_owned(), field.to_owned()));
    }

    /// A person edits record `id` of `collection` in the remote's own UI: `fields` (an object)
    /// replace those of the record, which is stamped under `stamp`. The record as stored
    /// after the edit, or `None` when there is no such record.
    pub fn edit(&self, collection: &str, id: u64, fields: Value) -> Option<Value> {
        let mut s = self.state.lock().unwrap();
        let mut record = s.store.get(collection)?.iter().find(|r| r["id"] == json!(id))?.as_object()?.clone();
        record.extend(fields.as_object().cloned().unwrap_or_default());
        s.stamp(&mut record);
        let stored = s.store.get_mut(collection)?.iter_mut().find(|r| r["id"] == json!(id))?;
        *stored = Value::Object(record);
        Some(stored.clone())
    }

    /// Answers about one record carry its version in `ETag` from now on (the quoted stamp
    /// of `stamp`, which must be on), and a `PATCH`/`PUT` with an `If-Match` naming another
    /// version is answered 412 Precondition Failed, changing nothing.
    pub fn etags(&self) {
        self.state.lock().unwrap().etags = true;
    }

    /// Ends every fault: queued and standing modes, matching failures, delays and slow answers.
    pub fn calm(&self) {
        let mut s = self.state.lock().unwrap();
        s.next.clear();
        s.always = None;
        s.matching.clear();
        s.delay = Duration::ZERO;
        s.slow_answers = Duration::ZERO;
    }

    /// The most requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    /// Write requests (not GETs) the store carried out and answered (or would have answered)
    /// with a 2xx: what the remote really changed, unlike `requests`, which also holds the
    /// ones a fault refused.
    pub fn writes_done(&self) -> usize {
        self.state.lock().unwrap().writes_done
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn records(&self, collection: &str) -> Vec<Value> {
        self.state.lock().unwrap().store.get(collection).cloned().unwrap_or_default()
    }

    /// Deletes a record of the store behind the sync's back (someone deleted it remotely);
    /// whether it was there.
    pub fn remove(&self, collection: &str, id: u64) -> bool {
        let mut s = self.state.lock().unwrap();
        let list = s.store.entry(collection.to_owned()).or_default();
        let before = list.len();
        list.retain(|r| r["id"] != json!(id));
        list.len() < before
    }
}

type Answer = Result<Response<Full<Bytes>>, std::io::Error>;

fn reply(code: u16, body: String, retry_after: Option<u64>) -> Answer {
    let mut r = Response::builder().status(code).header("content-type", "application/json");
    if let Some(s) = retry_after {
        r = r.header("retry-after", s.to_string());
    }
    Ok(r.body(Full::new(Bytes::from(body))).unwrap())
}

fn dropped() -> Answer {
    Err(std::io::Error::other("connection dropped on purpose"))
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Answer {
    let _in_flight = InFlight::start(&state);
    let method = req.method().to_string();
    let target = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let headers: Vec<(String, String)> =
        req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let if_match = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("if-match")).map(|(_, v)| v.clone());
    let host = headers.iter().find(|(k, _)| k == "host").map(|(_, v)| v.clone()).unwrap_or_default();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let routed = state.lock().unwrap().routes.get(&target).cloned();
    let authorized = {
        let s = state.lock().unwrap();
        s.required.as_ref().is_none_or(|(k, v)| headers.iter().any(|(hk, hv)| hk.eq_ignore_ascii_case(k) && hv == v))
    };
    let (mode, delay) = {
        let mut s = state.lock().unwrap();
        s.requests.push(Recorded {
            method: method.clone(),
            target: target.clone(),
            headers,
            body: body.clone(),
            at: Instant::now(),
        });
        // Queued modes are for writes; reads (the worker's lookups before a repeated create)
        // pass through, so a test can say what its POSTs get.
        let matched = if method == "GET" || routed.is_some() {
            None
        } else {
            s.matching.iter().find(|(needle, _)| body.contains(needle.as_str())).map(|(_, m)| m.clone())
        };
        let queued = if method == "GET" || routed.is_some() || matched.is_some() { None } else { s.next.pop_front() };
        let mode = if authorized {
            matched.or(queued).or_else(|| s.always.clone()).unwrap_or(Mode::Normal)
        } else {
            Mode::Status { code: 401, body: r#"{"message": "unauthorized"}"#.into(), retry_after: None }
        };
        (mode, s.delay)
    };
    let slow = if method == "GET" { Duration::ZERO } else { state.lock().unwrap().slow_answers };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some((code, headers, body)) = routed {
        let mut r = Response::builder().status(code).header("content-type", "application/json");
        for (k, v) in headers {
            r = r.header(k, v);
        }
        return Ok(r.body(Full::new(Bytes::from(body))).unwrap());
    }
    match mode {
        Mode::Status { code, body, retry_after } => reply(code, body, retry_after),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            reply(200, "{}".into(), None)
        }
        Mode::Drop => dropped(),
        Mode::Huge => reply(200, format!("{{\"padding\": \"{}\"}}", "x".repeat(4 << 20)), None),
        Mode::StoreThenDrop => {
            rest(&state, &method, &host, &target, &body);
            dropped()
        }
        Mode::StoreThenDropAfter(wait) => {
            rest(&state, &method, &host, &target, &body);
            tokio::time::sleep(wait).await;
            dropped()
        }
        Mode::StoreThenAnswer { code, body: answer } => {
            rest(&state, &method, &host, &target, &body);
            reply(code, answer, None)
        }
        Mode::Normal | Mode::NoContentForMissing => {
            if let Some(wanted) = if_match.filter(|_| method == "PATCH" || method == "PUT") {
                let current = version_of(&state, &target);
                if current.is_some_and(|v| v != wanted) {
                    return reply(412, r#"{"message": "precondition failed"}"#.into(), None);
                }
            }
            let (code, v) = rest(&state, &method, &host, &target, &body);
            if mode == Mode::NoContentForMissing && code == 404 && (method == "PATCH" || method == "PUT") {
                return reply(204, String::new(), None);
            }
            if !slow.is_zero() {
                tokio::time::sleep(slow).await;
            }
            let etag = etag_of(&state.lock().unwrap(), &v);
            let v = match state.lock().unwrap().wrap.clone() {
                Some(key) => json!({ key: v }),
                None => v,
            };
            let mut answer = reply(code, v.to_string(), None)?;
            if let Some(etag) = etag {
                answer.headers_mut().insert("etag", etag.parse().unwrap());
            }
            Ok(answer)
        }
    }
}

/// The version (`ETag`) of a record in an answer, when the store gives them.
fn etag_of(s: &State, record: &Value) -> Option<String> {
    let field = s.stamp_field.as_deref().filter(|_| s.etags)?;
    Some(format!("\"{}\"", record.get(field)?.as_str()?))
}

/// The version of the record a `/{collection}/{id}` target names, as it is stored now.
fn version_of(state: &Mutex<State>, target: &str) -> Option<String> {
    let s = state.lock().unwrap();
    let path = target.split('?').next().unwrap_or(target);
    let (coll, id) = path.trim_matches('/').split_once('/')?;
    let id: u64 = id.parse().ok()?;
    let record = s.store.get(coll)?.iter().find(|r| r["id"] == json!(id))?;
    etag_of(&s, record)
}

/// A query component with its percent-escapes decoded (`%5B` is `[`).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The store's behaviour for one request: status and body.
fn rest(state: &Mutex<State>, method: &str, host: &str, target: &str, body: &str) -> (u16, Value) {
    let answer = store(state, method, host, target, body);
    if method != "GET" && (200..300).contains(&answer.0) {
        state.lock().unwrap().writes_done += 1;
    }
    answer
}

/// The store's answer to one request: status and body.
fn store(state: &Mutex<State>, method: &str, host: &str, target: &str, body: &str) -> (u16, Value) {
    let mut s = state.lock().unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let input: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if method == "POST" && parts[0] == "batch" && parts.len() <= 2 {
        let coll = parts.get(1).copied().unwrap_or("batch").to_string();
        let mut results = Vec::new();
        for item in input.as_array().cloned().unwrap_or_default() {
            let record = item["record"].clone();
            let id = item["id"].as_u64().or_else(|| item["id"].as_str().and_then(|i| i.parse().ok()));
            let result = match (item["op"].as_str(), id) {
                (Some("create"), _) => {
                    s.next_id += 1;
                    let id = s.next_id;
                    let mut r = record.as_object().cloned().unwrap_or_default();
                    r.insert("id".into(), json!(id));
                    s.stamp(&mut r);
                    s.store.entry(coll.clone()).or_default().push(Value::Object(r));
                    json!({"status": 201, "id": s.same_created_id.unwrap_or(id)})
                }
                (Some("update"), Some(id)) => {
                    let stored = s.store.entry(coll.clone()).or_default().iter().find(|r| r["id"] == json!(id));
                    match (stored.and_then(Value::as_object).cloned(), record.as_object()) {
                        (Some(mut obj), Some(new)) => {
                            obj.extend(new.clone());
                            s.stamp(&mut obj);
                            replace(&mut s, &coll, id, obj);
                            json!({"status": 200, "id": id})
                        }
                        _ => json!({"status": 404, "error": "no such record"}),
                    }
                }
                (Some("delete"), Some(id)) => json!({"status": 200, "id": id}),
                _ => json!({"status": 422, "error": "bad item"}),
            };
            results.push(result);
        }
        return (200, Value::Array(results));
    }
    let coll = parts[0].to_string();
    let id = parts.get(1).and_then(|i| i.parse::<u64>().ok());
    match (method, id) {
        ("POST", None) => {
            s.next_id += 1;
            let id = s.next_id;
            let mut r: Map<String, Value> = input.as_object().cloned().unwrap_or_default();
            r.insert("id".into(), json!(id));
            s.stamp(&mut r);
            s.store.entry(coll).or_default().push(Value::Object(r.clone()));
            if let Some(same) = s.same_created_id {
                r.insert("id".into(), json!(same));
            }
            (201, Value::Object(r))
        }
        ("GET", None) => {
            let style = s.filters;
            let mut filters: Vec<(String, String)> = query
                .split('&')
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (decode(k), decode(v))))
                .filter_map(|(k, v)| match style {
                    _ if k == "page" || k == "per" => Some((k, v)),
                    FilterStyle::Plain => Some((k, v)),
                    FilterStyle::Bracket => {
                        k.strip_prefix("filter[").and_then(|f| f.strip_suffix(']')).map(|f| (f.to_string(), v))
                    }
                })
                .collect();
            let mut paging = |name: &str| {
                let at = filters.iter().position(|(k, _)| k == name)?;
                filters.remove(at).1.parse::<usize>().ok()
            };
            let (page, per) = (paging("page"), paging("per"));
            let since = s.cursor.clone().and_then(|(param, field)| {
                let at = filters.iter().position(|(k, _)| *k == param)?;
                Some((field, filters.remove(at).1))
            });
            let (page, per) = match s.page_lists {
                Some(always) => (Some(page.unwrap_or(1)), Some(per.unwrap_or(always))),
                None => (page, per),
            };
            let mut list: Vec<Value> = s
                .store
                .get(&coll)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| {
                    filters.iter().all(|(k, v)| {
                        r.get(k).is_some_and(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string()) == *v)
                    })
                })
                .filter(|r| since.as_ref().is_none_or(|(field, from)| r.get(field).is_some_and(|x| !before(x, from))))
                .collect();
            if let Some((field, _)) = &since {
                list.sort_by(|a, b| order(&a[field.as_str()], &b[field.as_str()]));
            }
            let Some(page) = page else { return (200, Value::Array(list)) };
            let per = per.unwrap_or(2).max(1);
            let slice: Vec<Value> = list.iter().skip((page.max(1) - 1) * per).take(per).cloned().collect();
            let next = (page.max(1) * per < list.len())
                .then(|| format!("http://{host}/{coll}?page={}&per={per}", page.max(1) + 1));
            (200, json!({"data": slice, "links": {"next": next}}))
        }
        ("GET", Some(id)) => match s.store.get(&coll).and_then(|list| list.iter().find(|r| r["id"] == json!(id))) {
            Some(r) => (200, r.clone()),
            None => (404, json!({"message": "no such record"})),
        },
        ("PATCH" | "PUT", Some(id)) => {
            match s.store.entry(coll.clone()).or_default().iter().find(|r| r["id"] == json!(id)).cloned() {
                Some(r) => {
                    // A PATCH changes the fields it carries; a PUT replaces the record.
                    let mut obj = if method == "PUT" {
                        Map::from_iter([("id".to_string(), json!(id))])
                    } else {
                        r.as_object().cloned().unwrap_or_default()
                    };
                    if let Some(new) = input.as_object() {
                        obj.extend(new.clone());
                        s.stamp(&mut obj);
                    }
                    replace(&mut s, &coll, id, obj.clone());
                    (200, Value::Object(obj))
                }
                None => (404, json!({"message": "no such record"})),
            }
        }
        ("DELETE", Some(id)) => {
            let list = s.store.entry(coll).or_default();
            let before = list.len();
            list.retain(|r| r["id"] != json!(id));
            if list.len() < before {
                (200, json!({}))
            } else {
                (404, json!({"message": "no such record"}))
            }
        }
        _ => (404, json!({"message": "not found"})),
    }
}

/// Puts `record` in the place of record `id` of collection `coll`.
fn replace(s: &mut State, coll: &str, id: u64, record: Map<String, Value>) {
    if let Some(stored) = s.store.entry(coll.to_owned()).or_default().iter_mut().find(|r| r["id"] == json!(id)) {
        *stored = Value::Object(record);
    }
}

/// A field's value as text, the way a query parameter carries it.
fn as_text(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
}

/// Two values in cursor order: as numbers when both are, else as text.
fn order(a: &Value, b: &Value) -> std::cmp::Ordering {
    let (a, b) = (as_text(a), as_text(b));
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(&b),
    }
}

/// Whether a record's cursor field comes before the cursor `from`.
fn before(v: &Value, from: &str) -> bool {
    order(v, &json!(from)).is_lt()
}
