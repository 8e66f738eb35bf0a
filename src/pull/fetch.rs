//! Fetching changed records from the remote (async, on the transport runtime): the first page
//! from the cursor on, then every next page, by a `Link: rel="next"` header or a pointer into
//! the body.

use crate::logic::delivery::{self, Answer};
use crate::transport::http::{Client, Method, Request};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct PullSpec {
    pub first_url: String,
    pub headers: Vec<(String, String)>,
    /// Where a page holds its records ("" = the body is the array).
    pub list_pointer: String,
    /// Where a page names the next page's URL, if not in a `Link` header.
    pub next_pointer: Option<String>,
    pub max_pages: usize,
}

#[derive(Debug, Clone)]
pub struct Pulled {
    pub records: Vec<Value>,
    pub pages: usize,
}

pub async fn fetch(client: Client, spec: PullSpec) -> Result<Pulled, String> {
    let mut records = Vec::new();
    let mut url = Some(spec.first_url.clone());
    let mut pages = 0;
    while let Some(current) = url.take() {
        if pages == spec.max_pages {
            break;
        }
        let mut req = Request::new(Method::Get, current.clone());
        req.headers = spec.headers.clone();
        let answer = client.send(&req).await;
        let body = page_body(&answer)?;
        let items = body.pointer(&spec.list_pointer).and_then(Value::as_array).ok_or_else(|| {
            format!("the pull answer has no array at \"{}\"; set the link's list_pointer", spec.list_pointer)
        })?;
        pages += 1;
        tracing::debug!("page {pages}: {} records", items.len());
        let empty = items.is_empty();
        records.extend(items.iter().cloned());
        let next = answer.next_link.clone().or_else(|| {
            let p = spec.next_pointer.as_deref()?;
            body.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
        });
        url = next.filter(|n| !empty && *n != current);
    }
    Ok(Pulled { records, pages })
}

fn page_body(answer: &Answer) -> Result<Value, String> {
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
            Some(b) => match (v.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => x > y,
                _ => v.as_str() > b.as_str(),
            },
        };
        if newer {
            best = Some(v);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
