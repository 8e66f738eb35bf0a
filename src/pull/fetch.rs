//! Fetching changed records from the remote (async, on the transport runtime): the first page
//! from the cursor on, then every next page, by a `Link: rel="next"` header or a pointer into
//! the body.

use crate::logic::delivery::{self, Answer};
use crate::logic::inbound_retry::{self, Refetched};
use crate::logic::reach;
use crate::transport::http::{Client, Method, Request};
use serde_json::Value;
use std::collections::HashSet;
use url::Url;

#[derive(Debug, Clone)]
pub struct PullSpec {
    pub first_url: String,
    pub headers: Vec<(String, String)>,
    /// Where a page holds its records ("" = the body is the array).
    pub list_pointer: String,
    /// Where a page names the next page's URL, if not in a `Link` header.
    pub next_pointer: Option<String>,
    pub max_pages: usize,
    /// Records that failed to apply at an earlier pull and are due again: (remote key, URL
    /// of the record), fetched after the pages.
    pub refetch: Vec<(String, String)>,
    /// The remote key field, which a refetched record must carry.
    pub remote_key_field: String,
}

#[derive(Debug, Clone)]
pub struct Pulled {
    pub records: Vec<Value>,
    /// What fetching each record of `PullSpec::refetch` again brought, by remote key.
    pub refetched: Vec<(String, Refetched)>,
    pub pages: usize,
    /// Why the pull ended before the last page, after `pages` pages whose records are kept
    /// (a failed page, a next link to another origin): the link reports it as its error.
    pub stopped: Option<String>,
}

/// Fetches the pages. A failure of the first page fails the pull; a later failure ends it with
/// the records of the pages before (and the failure in `stopped`). A next link is resolved
/// against its page's URL and must stay on its origin; a page already read in this pull ends it.
/// Then each record of `refetch` is fetched again by its id (after a failed first page, none).
pub async fn fetch(client: Client, spec: PullSpec) -> Result<Pulled, String> {
    let mut pulled = Pulled { records: Vec::new(), refetched: Vec::new(), pages: 0, stopped: None };
    let mut seen = HashSet::new();
    let mut url = Some(spec.first_url.clone());
    while let Some(current) = url.take() {
        if pulled.pages == spec.max_pages {
            break;
        }
        seen.insert(Url::parse(&current).map_or_else(|_| current.clone(), String::from));
        let mut req = Request::new(Method::Get, current.clone());
        req.headers = spec.headers.clone();
        let answer = client.send(&req).await;
        let (body, next) = match page(&answer, &spec) {
            Ok(page) => page,
            Err(e) if pulled.pages == 0 => return Err(e),
            Err(e) => {
                pulled.stopped = Some(format!(
                    "{e} (page {} of the pull; the {} before it applied)",
                    pulled.pages + 1,
                    pulled.pages
                ));
                break;
            }
        };
        pulled.pages += 1;
        tracing::debug!("page {}: {} records", pulled.pages, body.len());
        let empty = body.is_empty();
        pulled.records.extend(body);
        let Some(next) = next.filter(|_| !empty) else { break };
        match reach::next_page(answer.url.as_deref().unwrap_or(&current), &next) {
            Ok(next) if seen.contains(next.as_str()) => break,
            Ok(next) => url = Some(next.to_string()),
            Err(e) => pulled.stopped = Some(format!("pull stopped after page {}: {e}", pulled.pages)),
        }
    }
    for (key, url) in &spec.refetch {
        let mut req = Request::new(Method::Get, url.clone());
        req.headers = spec.headers.clone();
        let answer = client.send(&req).await;
        let got = inbound_retry::refetched(&answer, &spec.list_pointer, &spec.remote_key_field);
        if let Refetched::Failed(why) = &got {
            tracing::debug!("record {key} fetched again: {why}");
        }
        pulled.refetched.push((key.clone(), got));
    }
    Ok(pulled)
}

/// A page's records and the link to the next page, if any.
fn page(answer: &Answer, spec: &PullSpec) -> Result<(Vec<Value>, Option<String>), String> {
    let body = page_body(answer)?;
    let items = body.pointer(&spec.list_pointer).and_then(Value::as_array).ok_or_else(|| {
        format!("the pull answer has no array at \"{}\"; set the link's list_pointer", spec.list_pointer)
    })?;
    let next = answer.next_link.clone().or_else(|| {
        let p = spec.next_pointer.as_deref()?;
        body.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
    });
    Ok((items.clone(), next))
}

fn page_body(answer: &Answer) -> Result<Value, String> {
    if let Some(reason) = &answer.refused {
        return Err(format!("pull: {reason}"));
    }
    match answer.status {
        Some(200..=299) => serde_json::from_str(&answer.body).map_err(|e| format!("the pull answer is not JSON: {e}")),
        Some(status) => Err(format!("pull: HTTP {status}: {}", delivery::remote_message(&answer.body))),
        None => Err(format!("pull: {}", answer.error.as_deref().unwrap_or("no response"))),
    }
}

/// The newest cursor value among `records` (numbers compared as numbers, anything else as
/// text), or `current` when none is newer.
pub fn advance_cursor(records: &[Value], field: &str, current: Option<&str>) -> Option<String> {
    let mut best: Option<String> = current.map(str::to_owned);
    for v in records.iter().filter_map(|r| r.get(field)).filter_map(delivery::id_text) {
        let newer = match &best {
            None => true,
            Some(b) => match cmp_decimal(&v, b) {
                Some(order) => order.is_gt(),
                None => v.as_str() > b.as_str(),
            },
        };
        if newer {
            best = Some(v);
        }
    }
    best
}

/// Compares two plain decimal numbers (`-?digits(.digits)?`) exactly, whatever their size:
/// as f64, cursors past 2^53 (ids, nanosecond stamps) compared equal and the cursor stalled.
/// `None` when either is not such a number.
fn cmp_decimal(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;
    fn parts(s: &str) -> Option<(bool, &str, &str)> {
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let plain = |t: &str| t.bytes().all(|c| c.is_ascii_digit());
        if int.is_empty() || !plain(int) || !plain(frac) || (digits.contains('.') && frac.is_empty()) {
            return None;
        }
        let (int, frac) = (int.trim_start_matches('0'), frac.trim_end_matches('0'));
        let zero = int.is_empty() && frac.is_empty();
        Some((negative && !zero, int, frac))
    }
    let ((neg_a, int_a, frac_a), (neg_b, int_b, frac_b)) = (parts(a)?, parts(b)?);
    let magnitude = int_a.len().cmp(&int_b.len()).then_with(|| int_a.cmp(int_b)).then_with(|| frac_a.cmp(frac_b));
    Some(match (neg_a, neg_b) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::reach::AllowList;
    use crate::transport::testing::{block_on, respond, Server};
    use serde_json::json;
    use std::time::Duration;

    fn pull(first_url: String, next_pointer: Option<&str>) -> Result<Pulled, String> {
        let client = Client::new(Duration::from_secs(5), 1 << 20, AllowList::parse("")).unwrap();
        let spec = PullSpec {
            first_url,
            headers: vec![("Authorization".into(), "Bearer tok-123456".into())],
            list_pointer: "/data".into(),
            next_pointer: next_pointer.map(str::to_owned),
            max_pages: 50,
            refetch: Vec::new(),
            remote_key_field: "id".into(),
        };
        block_on(fetch(client, spec))
    }

    #[test]
    fn cursors_compare_exactly_past_two_to_the_53() {
        use std::cmp::Ordering::*;
        // 2^53 + 1 and 2^53 are one f64.
        assert_eq!(cmp_decimal("9007199254740993", "9007199254740992"), Some(Greater));
        assert_eq!(cmp_decimal("10", "9"), Some(Greater));
        assert_eq!(cmp_decimal("007", "7.000"), Some(Equal));
        assert_eq!(cmp_decimal("-2", "-10"), Some(Greater));
        assert_eq!(cmp_decimal("-0", "0"), Some(Equal));
        assert_eq!(cmp_decimal("1.25", "1.3"), Some(Less));
        assert_eq!(cmp_decimal("2024-01-01", "9"), None);
        assert_eq!(cmp_decimal("1e3", "9"), None);
        let records = [json!({"seq": "9007199254740993"}), json!({"seq": 9007199254740992u64})];
        assert_eq!(advance_cursor(&records, "seq", Some("9007199254740992")).as_deref(), Some("9007199254740993"));
        let stamps = [json!({"at": "2024-01-02T00:00:00Z"}), json!({"at": "2024-01-01T00:00:00Z"})];
        assert_eq!(advance_cursor(&stamps, "at", None).as_deref(), Some("2024-01-02T00:00:00Z"));
    }

    #[test]
    fn a_relative_link_header_is_resolved_against_the_page() {
        let server = Server::start(|req, _| match req.target.as_str() {
            "/v1/items?page=1" => respond(200, &[("link", "<?page=2>; rel=\"next\"")], r#"{"data": [{"id": 1}]}"#),
            "/v1/items?page=2" => {
                respond(200, &[("link", "</v1/items?page=3>; rel=\"next\"")], r#"{"data": [{"id": 2}]}"#)
            }
            _ => respond(200, &[], r#"{"data": [{"id": 3}]}"#),
        });
        let pulled = pull(server.url("/v1/items?page=1"), None).unwrap();
        assert_eq!(pulled.records, [json!({"id": 1}), json!({"id": 2}), json!({"id": 3})]);
        assert_eq!((pulled.pages, pulled.stopped), (3, None));
    }

    #[test]
    fn a_next_page_on_another_origin_ends_the_pull_and_keeps_the_pages_read() {
        let elsewhere = Server::start(|_, _| respond(200, &[], r#"{"data": [{"id": 666}]}"#));
        let away = elsewhere.url("/collect");
        let server = Server::start(move |req, port| match req.target.as_str() {
            "/p1" => respond(
                200,
                &[],
                &json!({"data": [{"id": 1}], "next": format!("http://127.0.0.1:{port}/p2")}).to_string(),
            ),
            _ => respond(200, &[], &json!({"data": [{"id": 2}], "next": away}).to_string()),
        });
        let pulled = pull(server.url("/p1"), Some("/next")).unwrap();
        assert_eq!(pulled.records, [json!({"id": 1}), json!({"id": 2})]);
        let stopped = pulled.stopped.expect("the pull says why it stopped");
        assert!(stopped.contains(&elsewhere.url("/collect")) && stopped.contains("same origin"), "{stopped}");
        assert!(elsewhere.seen().is_empty(), "the other origin was asked");
    }

    #[test]
    fn a_page_seen_before_ends_the_pull() {
        let server = Server::start(|req, _| match req.target.as_str() {
            "/a" => respond(200, &[], r#"{"data": [{"id": 1}], "next": "/b"}"#),
            _ => respond(200, &[], r#"{"data": [{"id": 2}], "next": "/a"}"#),
        });
        let pulled = pull(server.url("/a"), Some("/next")).unwrap();
        assert_eq!((pulled.pages, pulled.records.len(), pulled.stopped), (2, 2, None));
        assert_eq!(server.seen().len(), 2);
    }

    #[test]
    fn a_failing_first_page_fails_the_pull_and_a_later_one_keeps_the_pages_before() {
        let server = Server::start(|req, _| match req.target.as_str() {
            "/ok" => respond(200, &[], r#"{"data": [{"id": 1}], "next": "/broken"}"#),
            _ => respond(500, &[], r#"{"message": "down"}"#),
        });
        assert_eq!(pull(server.url("/broken"), Some("/next")).unwrap_err(), "pull: HTTP 500: down");
        let pulled = pull(server.url("/ok"), Some("/next")).unwrap();
        assert_eq!(pulled.records, [json!({"id": 1})]);
        assert!(pulled.stopped.is_some_and(|s| s.starts_with("pull: HTTP 500: down (page 2")));
    }

    #[test]
    fn the_cursor_moves_to_the_newest_value() {
        let recs = [json!({"v": 9}), json!({"v": 10}), json!({"x": 1})];
        assert_eq!(advance_cursor(&recs, "v", Some("2")).as_deref(), Some("10"));
        assert_eq!(advance_cursor(&recs, "v", Some("11")).as_deref(), Some("11"));
        let recs = [json!({"t": "2026-01-02T00:00:00Z"}), json!({"t": "2026-01-01T00:00:00Z"})];
        assert_eq!(advance_cursor(&recs, "t", None).as_deref(), Some("2026-01-02T00:00:00Z"));
        assert_eq!(advance_cursor(&[], "t", None), None);
    }
}
