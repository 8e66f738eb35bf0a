//! Pulled records that failed to apply: when the worker fetches one again, and what an
//! answer to that fetch means. The pull's cursor has moved past them, so without this they
//! would stay different on the two sides until someone edits them again.

use super::delivery::{self, Answer};
use serde_json::Value;
use std::time::Duration;

/// The wait before the second try of a failed record; it doubles with each attempt.
const BASE: Duration = Duration::from_secs(5);
/// The longest wait between two tries.
const MAX: Duration = Duration::from_secs(3600);

/// When to fetch a record again after its `attempts`-th failure (1 = the first), with jitter
/// in `0.0..=1.0` (half to all of the wait); `None` once `max_attempts` failures are reached
/// (given up: `retry_failed()` or a new version in a pull takes it up again).
pub fn next_try(attempts: u32, max_attempts: u64, jitter: f64) -> Option<Duration> {
    if u64::from(attempts) >= max_attempts {
        return None;
    }
    let exp = attempts.saturating_sub(1).min(16);
    let full = BASE.saturating_mul(1u32 << exp).min(MAX);
    Some(full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
}

/// What a fetch of one record by its id brought.
#[derive(Debug, Clone, PartialEq)]
pub enum Refetched {
    /// Its current version, to apply as a pulled record.
    Record(Value),
    /// The remote no longer has it (404, 410): nothing left to apply.
    Gone,
    /// No usable answer (an outage, a 5xx, a body without the record): tried again later.
    Failed(String),
}

/// Reads the answer to `GET {collection}/{id}`: the record is the body, or the object at
/// `pointer` in it (the link's `list_pointer`, for remotes that wrap every answer the same
/// way), and must carry the remote key field.
pub fn refetched(answer: &Answer, pointer: &str, remote_key_field: &str) -> Refetched {
    if let Some(reason) = &answer.refused {
        return Refetched::Failed(reason.clone());
    }
    match answer.status {
        Some(404 | 410) => Refetched::Gone,
        Some(200..=299) => match serde_json::from_str::<Value>(&answer.body) {
            Ok(body) => {
                let has_key = |v: &Value| v.as_object().is_some_and(|o| o.contains_key(remote_key_field));
                if has_key(&body) {
                    Refetched::Record(body)
                } else if let Some(inner) = body.pointer(pointer).filter(|v| !pointer.is_empty() && has_key(v)) {
                    Refetched::Record(inner.clone())
                } else {
                    Refetched::Failed(format!("the answer holds no record with the field \"{remote_key_field}\""))
                }
            }
            Err(e) => Refetched::Failed(format!("the answer is not JSON: {e}")),
        },
        Some(status) => Refetched::Failed(format!("HTTP {status}: {}", delivery::remote_message(&answer.body))),
        None => Refetched::Failed(answer.error.clone().unwrap_or_else(|| "no response".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tries_back_off_and_stop_at_the_limit() {
        assert_eq!(next_try(1, 8, 1.0), Some(Duration::from_secs(5)));
        assert_eq!(next_try(1, 8, 0.0), Some(Duration::from_millis(2500)));
        assert_eq!(next_try(3, 8, 1.0), Some(Duration::from_secs(20)));
        assert_eq!(next_try(7, 8, 1.0), Some(Duration::from_secs(320)));
        assert_eq!(next_try(8, 8, 1.0), None);
        assert_eq!(next_try(30, 100, 1.0), Some(MAX));
        assert_eq!(next_try(1, 1, 1.0), None);
    }

    fn answer(status: Option<u16>, body: &str) -> Answer {
        Answer { status, body: body.into(), ..Answer::default() }
    }

    #[test]
    fn answers_to_a_refetch() {
        let rec = json!({"id": 7, "name": "Ada"});
        assert_eq!(refetched(&answer(Some(200), &rec.to_string()), "", "id"), Refetched::Record(rec.clone()));
        let wrapped = json!({"data": rec}).to_string();
        assert_eq!(refetched(&answer(Some(200), &wrapped), "/data", "id"), Refetched::Record(rec));
        assert!(matches!(refetched(&answer(Some(200), &wrapped), "", "id"), Refetched::Failed(_)));
        assert_eq!(refetched(&answer(Some(404), "{}"), "", "id"), Refetched::Gone);
        assert_eq!(refetched(&answer(Some(410), ""), "", "id"), Refetched::Gone);
        assert!(matches!(refetched(&answer(Some(503), "down"), "", "id"), Refetched::Failed(m) if m.contains("503")));
        assert!(matches!(refetched(&answer(None, ""), "", "id"), Refetched::Failed(_)));
        assert!(matches!(refetched(&answer(Some(200), "<html>"), "", "id"), Refetched::Failed(_)));
    }
}
