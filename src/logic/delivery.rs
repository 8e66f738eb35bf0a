//! Outbound decisions that need neither the database nor the network: what a record's
//! payload is, where it goes, how an HTTP answer is judged (delivered, retry later, give up),
//! and when the next attempt is due.

use super::canonical;
use super::mapping::FieldMap;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime};

/// First retry delay; each later attempt doubles it, up to [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest remote message kept in an event.
pub const MESSAGE_LIMIT: usize = 500;

/// The remote's answer to one request, as the transport saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status; `None` when no response arrived (timeout, refused, reset, too large).
    pub status: Option<u16>,
    pub body: String,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// What went wrong below HTTP, if anything.
    pub error: Option<String>,
    /// The `rel="next"` target of a `Link` header (pagination), as the remote wrote it.
    pub next_link: Option<String>,
    /// Why the transport would not go on (a redirect to another origin, a host outside
    /// `syncbridge.allowed_hosts`): a permanent failure, never retried.
    pub refused: Option<String>,
    /// The URL that answered (after same-origin redirects); relative links resolve against it.
    pub url: Option<String>,
    /// The `ETag` header: the version of the record the answer is about (`before_update` =
    /// `if_match` sends it back in `If-Match`).
    pub etag: Option<String>,
}

/// What to do with a record after an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Accepted; the parsed body (for a created id) comes along.
    Delivered(Value),
    /// Try again after the delay (5xx, 408, 429, timeouts, connection errors).
    Retry { after: Duration, reason: String },
    /// The remote refused it for good (other 4xx); its message is kept.
    Permanent { reason: String },
}

/// Judges an answer. `attempt` is the attempt that got it (1 for the first), `jitter` a
/// number in [0, 1) that spreads retries of many records apart.
pub fn judge(answer: &Answer, attempt: u32, jitter: f64, now: SystemTime) -> Verdict {
    if let Some(reason) = &answer.refused {
        return Verdict::Permanent { reason: reason.clone() };
    }
    let Some(status) = answer.status else {
        let reason = answer.error.clone().unwrap_or_else(|| "no response".to_string());
        return Verdict::Retry { after: backoff(attempt, jitter), reason };
    };
    let message = remote_message(&answer.body);
    match status {
        200..=299 => Verdict::Delivered(serde_json::from_str(&answer.body).unwrap_or(Value::Null)),
        429 => {
            let after = answer
                .retry_after
                .as_deref()
                .and_then(|h| retry_after(h, now))
                .unwrap_or_else(|| backoff(attempt, jitter));
            Verdict::Retry { after, reason: with_message("HTTP 429 Too Many Requests", &message) }
        }
        408 | 500..=599 => {
            let after = answer
                .retry_after
                .as_deref()
                .and_then(|h| retry_after(h, now))
                .unwrap_or_else(|| backoff(attempt, jitter));
            Verdict::Retry { after, reason: with_message(&format!("HTTP {status}"), &message) }
        }
        _ => Verdict::Permanent { reason: with_message(&format!("HTTP {status}"), &message) },
    }
}

fn with_message(head: &str, message: &str) -> String {
    if message.is_empty() {
        head.to_string()
    } else {
        format!("{head}: {message}")
    }
}

/// Hand-written: three lines of arithmetic on the settle path, where a backoff crate would
/// bring its own clock and randomness (ours is a hash of the key, see settle::jitter_for).
/// Exponential backoff with jitter: attempt 1 waits 0.5–1 s, attempt 2 1–2 s, … up to five
/// minutes.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    let full = BASE_BACKOFF.saturating_mul(1u32 << exp).min(MAX_BACKOFF);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A `Retry-After` value: delay-seconds or an HTTP date. Capped at an hour.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value).ok()?.duration_since(now).unwrap_or(Duration::ZERO),
    };
    Some(wait.min(Duration::from_secs(3600)))
}

/// The remote's error message from a body: `message`, `error` or `detail` of a JSON object,
/// else the body itself; shortened to [`MESSAGE_LIMIT`] characters.
pub fn remote_message(body: &str) -> String {
    let from_json = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        ["message", "error", "detail", "title"].iter().find_map(|k| match v.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
    });
    let text = from_json.unwrap_or_else(|| body.trim().to_string());
    match text.char_indices().nth(MESSAGE_LIMIT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// The `rel="next"` URL of a `Link` header (RFC 8288), if any.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().to_ascii_lowercase();
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

/// An id as the id map keeps it: strings as they are, numbers canonical.
pub fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(canonical::canonical_number(&n.to_string()).unwrap_or_else(|| n.to_string())),
        _ => None,
    }
}

/// The id of a created record: at `pointer` (RFC 6901) in the response, or, with an empty
/// pointer, the remote key field of the returned object.
pub fn created_id(body: &Value, pointer: &str, remote_key_field: &str) -> Option<String> {
    if pointer.is_empty() {
        body.get(remote_key_field).and_then(id_text)
    } else {
        body.pointer(pointer).and_then(id_text)
    }
}

/// `{base}/{collection}`, plus `/{id}` when given (the id percent-encoded as a path segment).
pub fn record_url(base: &str, collection: &str, id: Option<&str>) -> String {
    let mut url = format!("{base}/{collection}");
    if let Some(id) = id {
        url.push('/');
        url.push_str(&encode_component(id));
    }
    url
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// What a URL component keeps as it is: RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// How a payload is cut from a row.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    pub remote_key_field: &'a str,
    /// The remote field that holds the local id (`local_id_field`), if any.
    pub local_id_field: Option<&'a str>,
}

/// The payload for a row (local column names → values): its synced fields under their remote
/// names, the local key left out when it would land in the remote's own key field (a local id
/// is not the remote's id) unless a rule maps it there, and the local id under
/// `local_id_field`. With `only`, just those remote fields (a reflection or a writeback).
pub fn payload(
    row: &Map<String, Value>,
    map: &FieldMap,
    shape: Shape<'_>,
    only: Option<&[String]>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for f in &map.fields {
        if f.remote == shape.remote_key_field && !f.explicit_remote {
            continue;
        }
        if only.is_some_and(|names| !names.contains(&f.remote)) {
            continue;
        }
        out.insert(f.remote.clone(), row.get(&f.column).cloned().unwrap_or(Value::Null));
    }
    if let Some(field) = shape.local_id_field {
        if let Some(key) = row.get(&map.key.name) {
            out.insert(field.to_string(), key.clone());
        }
    }
    out
}

/// What an answer to an update (a `PATCH` or `PUT` of a paired remote id) says of the remote
/// record, beyond delivered or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateAnswer {
    /// Nothing beyond what [`judge`] says.
    Plain,
    /// A 2xx that carries no record (a 204, an empty or `null` body): delivered, and the
    /// event says so (`reason`).
    NoRecord { reason: String },
    /// The remote record is gone: a 404, or a 2xx with no record on a link whose
    /// `empty_update_answer` is `gone`. The link's delete policy applies, as for a tombstone.
    Gone { why: String },
}

/// Reads an answer to an update. `empty_is_gone`: the link's `empty_update_answer` is `gone`.
pub fn update_answer(answer: &Answer, empty_is_gone: bool) -> UpdateAnswer {
    if answer.refused.is_some() {
        return UpdateAnswer::Plain;
    }
    match answer.status {
        Some(404) => UpdateAnswer::Gone { why: "the record was deleted on the remote (HTTP 404 to the update)".into() },
        Some(code @ 200..=299) if no_record(&answer.body) || code == 204 => {
            if empty_is_gone {
                UpdateAnswer::Gone {
                    why: format!("the record was deleted on the remote (HTTP {code} with no record to the update)"),
                }
            } else {
                UpdateAnswer::NoRecord { reason: format!("delivered (the remote answered {code} with no record)") }
            }
        }
        _ => UpdateAnswer::Plain,
    }
}

/// A body that holds no record: empty, or JSON `null`.
fn no_record(body: &str) -> bool {
    let body = body.trim();
    body.is_empty() || body == "null"
}

/// The remote names of the volatile fields (left out of fingerprints).
pub fn volatile_fields(map: &FieldMap) -> Vec<&str> {
    map.fields.iter().filter(|f| f.volatile).map(|f| f.remote.as_str()).collect()
}

/// What an update sends: the fields of `whole` (a row's payload without the local id) whose
/// value differs from `base`, the version both sides last agreed on, compared as the remote
/// sees values (`12.5` is `12.50`). A field the base lacks counts as changed. Empty when only
/// volatile fields changed: those travel with a real change, never alone.
pub fn changed_fields(whole: &Map<String, Value>, base: &Map<String, Value>, volatile: &[&str]) -> Vec<String> {
    let changed: Vec<String> = whole
        .iter()
        .filter(|(name, value)| base.get(*name).is_none_or(|b| !super::contention::same(b, value)))
        .map(|(name, _)| name.clone())
        .collect();
    if changed.iter().all(|name| volatile.contains(&name.as_str())) {
        return Vec::new();
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13 point 1: r set qty, l set name; the update carries name only, so the
    /// remote's qty stays.
    #[test]
    fn an_update_carries_only_the_fields_that_differ_from_the_base() {
        let obj = |v: Value| v.as_object().cloned().unwrap();
        let base = obj(json!({"name": "A", "qty": 1, "balance": 12.5, "synced_at": "t1"}));
        let whole = obj(json!({"name": "L", "qty": 1, "balance": 12.50, "synced_at": "t2", "note": null}));
        assert_eq!(changed_fields(&whole, &base, &["synced_at"]), vec!["name", "note", "synced_at"]);
        let only_volatile = obj(json!({"name": "A", "qty": 1, "balance": 12.5, "synced_at": "t3"}));
        assert!(changed_fields(&only_volatile, &base, &["synced_at"]).is_empty());
        let same = obj(json!({"name": "A", "qty": "1", "balance": 12.5, "synced_at": "t1"}));
        assert_eq!(changed_fields(&same, &base, &[]), vec!["qty"], "a string is not a number to the remote");
    }

    #[test]
    fn an_update_answer_tells_a_gone_record_and_one_with_no_record() {
        let answer = |status: u16, body: &str| Answer { status: Some(status), body: body.into(), ..Default::default() };
        assert_eq!(update_answer(&answer(200, r#"{"id": 1}"#), false), UpdateAnswer::Plain);
        assert_eq!(update_answer(&answer(200, r#"{"id": 1}"#), true), UpdateAnswer::Plain);
        assert_eq!(update_answer(&answer(422, "bad"), false), UpdateAnswer::Plain);
        assert_eq!(update_answer(&answer(500, ""), true), UpdateAnswer::Plain);
        assert_eq!(
            update_answer(&answer(404, r#"{"message": "no such record"}"#), false),
            UpdateAnswer::Gone { why: "the record was deleted on the remote (HTTP 404 to the update)".into() }
        );
        assert_eq!(
            update_answer(&answer(204, ""), false),
            UpdateAnswer::NoRecord { reason: "delivered (the remote answered 204 with no record)".into() }
        );
        assert_eq!(
            update_answer(&answer(200, " null "), false),
            UpdateAnswer::NoRecord { reason: "delivered (the remote answered 200 with no record)".into() }
        );
        assert_eq!(
            update_answer(&answer(204, ""), true),
            UpdateAnswer::Gone {
                why: "the record was deleted on the remote (HTTP 204 with no record to the update)".into()
            }
        );
        let refused = Answer { status: Some(404), refused: Some("another origin".into()), ..Default::default() };
        assert_eq!(update_answer(&refused, false), UpdateAnswer::Plain);
    }
    use crate::logic::mapping::{Column, FieldRule};
    use serde_json::json;

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status: Some(status), body: body.into(), ..Default::default() }
    }

    #[test]
    fn success_carries_the_body() {
        let v = judge(&answer(201, r#"{"id": 7}"#), 1, 0.0, SystemTime::now());
        assert_eq!(v, Verdict::Delivered(json!({"id": 7})));
        assert_eq!(judge(&answer(204, ""), 1, 0.0, SystemTime::now()), Verdict::Delivered(Value::Null));
    }

    #[test]
    fn server_errors_and_timeouts_retry_with_growing_delays() {
        let now = SystemTime::now();
        let delays: Vec<Duration> = (1..=4)
            .map(|a| match judge(&answer(503, "busy"), a, 0.0, now) {
                Verdict::Retry { after, reason } => {
                    assert_eq!(reason, "HTTP 503: busy");
                    after
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 4000].map(Duration::from_millis));
        let timeout = Answer { error: Some("timed out".into()), ..Default::default() };
        assert!(matches!(judge(&timeout, 1, 0.5, now), Verdict::Retry { reason, .. } if reason == "timed out"));
        assert!(matches!(judge(&answer(408, ""), 1, 0.0, now), Verdict::Retry { .. }));
    }

    #[test]
    fn refusals_of_the_transport_are_permanent() {
        let a =
            Answer { refused: Some("HTTP 307 redirect to another origin not followed".into()), ..Default::default() };
        assert_eq!(
            judge(&a, 1, 0.0, SystemTime::now()),
            Verdict::Permanent { reason: "HTTP 307 redirect to another origin not followed".into() }
        );
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        assert_eq!(backoff(1, 0.999_999).as_millis(), 999);
        assert_eq!(backoff(30, 0.0), MAX_BACKOFF / 2);
        assert_eq!(backoff(30, 1.0), MAX_BACKOFF);
        assert!(backoff(3, 0.3) > backoff(3, 0.2));
    }

    #[test]
    fn too_many_requests_honours_retry_after() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut a = answer(429, "");
        a.retry_after = Some("7".into());
        assert_eq!(
            judge(&a, 1, 0.0, now),
            Verdict::Retry { after: Duration::from_secs(7), reason: "HTTP 429 Too Many Requests".into() }
        );
        a.retry_after = Some(httpdate::fmt_http_date(now + Duration::from_secs(30)));
        assert!(matches!(judge(&a, 1, 0.0, now), Verdict::Retry { after, .. } if after == Duration::from_secs(30)));
        a.retry_after = Some("soon".into());
        assert!(matches!(judge(&a, 2, 0.0, now), Verdict::Retry { after, .. } if after == Duration::from_secs(1)));
        assert_eq!(retry_after("999999", now), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn client_errors_are_permanent_and_keep_the_message() {
        let v = judge(&answer(422, r#"{"message": "email is invalid"}"#), 1, 0.0, SystemTime::now());
        assert_eq!(v, Verdict::Permanent { reason: "HTTP 422: email is invalid".into() });
        let v = judge(&answer(404, "Not Found"), 1, 0.0, SystemTime::now());
        assert_eq!(v, Verdict::Permanent { reason: "HTTP 404: Not Found".into() });
        let long = "x".repeat(2000);
        assert_eq!(remote_message(&long).chars().count(), MESSAGE_LIMIT + 1);
    }

    #[test]
    fn link_headers_give_the_next_page() {
        let h =
            r#"<http://h/c?_page=1>; rel="first", <http://h/c?_page=3>; rel="next", <http://h/c?_page=9>; rel="last""#;
        assert_eq!(next_link(h).as_deref(), Some("http://h/c?_page=3"));
        assert_eq!(next_link(r#"<http://h/c?_page=1>; rel="first""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn created_ids_by_pointer_or_key_field() {
        let body = json!({"data": {"id": 12.0}, "id": "a b"});
        assert_eq!(created_id(&body, "/data/id", "id").as_deref(), Some("12"));
        assert_eq!(created_id(&body, "", "id").as_deref(), Some("a b"));
        assert_eq!(created_id(&body, "/missing", "id"), None);
        assert_eq!(record_url("http://h/v1", "customers", Some("a b/c")), "http://h/v1/customers/a%20b%2Fc");
        assert_eq!(record_url("http://h", "c", None), "http://h/c");
    }

    fn map() -> FieldMap {
        let col =
            |name: &str, attnum| Column { name: name.into(), attnum, not_null: false, coerce: Default::default() };
        let cols = [col("id", 1), col("name", 2), col("synced_at", 3), col("secret", 4)];
        let rules = [
            FieldRule { column: "synced_at".into(), volatile: true, synced: true, ..Default::default() },
            FieldRule { column: "secret".into(), synced: false, ..Default::default() },
            FieldRule {
                column: "name".into(),
                remote_field: Some("full_name".into()),
                synced: true,
                ..Default::default()
            },
        ];
        FieldMap::build(&cols, &rules, "id").unwrap()
    }

    #[test]
    fn payload_maps_names_and_keeps_the_local_id_out_of_the_remote_key() {
        let row = json!({"id": 5, "name": "Ada", "synced_at": "t", "secret": "s"});
        let row = row.as_object().unwrap();
        let shape = Shape { remote_key_field: "id", local_id_field: None };
        assert_eq!(Value::Object(payload(row, &map(), shape, None)), json!({"full_name": "Ada", "synced_at": "t"}));
        let shape = Shape { remote_key_field: "id", local_id_field: Some("local_id") };
        assert_eq!(
            Value::Object(payload(row, &map(), shape, Some(&["full_name".to_string()]))),
            json!({"full_name": "Ada", "local_id": 5})
        );
        let shape = Shape { remote_key_field: "uuid", local_id_field: None };
        assert!(payload(row, &map(), shape, None).contains_key("id"));
        assert_eq!(volatile_fields(&map()), ["synced_at"]);
    }
}
