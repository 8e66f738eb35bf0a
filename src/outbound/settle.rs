//! Step 3: judge the answers and record them (SPI, worker main thread): the id map (new remote
//! ids, also into the user's `remote_id_column` under the origin flag), fingerprints and base
//! snapshots, `_pending` (done, retry later, dead-lettered), and one event per record. An
//! update whose remote record is gone (a 404) applies the link's delete policy (`gone`).

mod gone;

use super::plan::{Action, Sent};
use crate::catalog::link::LinkRow;
use crate::error::OrRaise;
use crate::logic::delivery::{self, UpdateAnswer, Verdict};
use crate::logic::status::Status;
use crate::origin;
use crate::table::{Access, TableStatements};
use pgrx::prelude::*;
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime};

/// One record's outcome, as `syncbridge._settle` records it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub local_key: String,
    pub seq: i64,
    pub status: Status,
    pub reason: Option<String>,
    pub attempt: u32,
    /// RFC 3339; set for a failure that will be retried.
    pub next_retry: Option<String>,
    pub remote_key: Option<String>,
    pub fingerprint: Option<String>,
    pub base: Option<Map<String, Value>>,
    /// The record no longer exists on either side: drop its id-map entry.
    pub gone: bool,
    pub detail: Option<Value>,
    /// The loop detector's hop times (delivered or quarantined records).
    pub hops: Option<Vec<i64>>,
}

impl Outcome {
    pub fn stopped(key: &str, seq: i64, attempt: u32, status: Status, reason: &str, fp: Option<String>) -> Self {
        Self {
            local_key: key.to_string(),
            seq,
            status,
            reason: Some(reason.to_string()),
            attempt,
            next_retry: None,
            remote_key: None,
            fingerprint: fp,
            base: None,
            gone: false,
            detail: None,
            hops: None,
        }
    }

    pub fn gone(mut self) -> Self {
        self.gone = true;
        self
    }
}

#[derive(Debug, Default)]
pub struct Results {
    outcomes: Vec<Outcome>,
    /// (local key, remote key) of records the remote has just created.
    new_ids: Vec<(String, String)>,
    /// The soonest retry among the failures, if any will be retried.
    pub next_retry: Option<Duration>,
}

impl Results {
    pub fn push(&mut self, o: Outcome) {
        self.outcomes.push(o);
    }

    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// The reason of the first failure, if any.
    pub fn first_failure(&self) -> Option<&str> {
        self.outcomes.iter().find(|o| o.status == Status::Failed).and_then(|o| o.reason.as_deref())
    }

    pub fn count(&self, status: Status) -> usize {
        self.outcomes.iter().filter(|o| o.status == status).count()
    }

    /// Writes everything down in the current transaction, in one call with one array per
    /// column.
    pub fn record(&self, link_id: i64) {
        if self.outcomes.is_empty() {
            return;
        }
        let o = &self.outcomes;
        let col = |f: &dyn Fn(&Outcome) -> Option<String>| o.iter().map(f).collect::<Vec<Option<String>>>();
        let detail = |key: &str| col(&|x| x.detail.as_ref()?.get(key)?.as_str().map(str::to_owned));
        let http: Vec<Option<i32>> =
            o.iter().map(|x| x.detail.as_ref()?.get("http_status")?.as_i64().map(|n| n as i32)).collect();
        Spi::run_with_args(
            "SELECT syncbridge._settle($1, $2, $3, $4, $5, $6, $7::timestamptz[], $8, $9, $10, $11, $12, $13, $14, $15)",
            &[
                link_id.into(),
                col(&|x| Some(x.local_key.clone())).into(),
                o.iter().map(|x| x.seq).collect::<Vec<i64>>().into(),
                col(&|x| Some(x.status.name().to_string())).into(),
                col(&|x| x.reason.clone()).into(),
                o.iter().map(|x| x.attempt as i32).collect::<Vec<i32>>().into(),
                col(&|x| x.next_retry.clone()).into(),
                col(&|x| x.remote_key.clone()).into(),
                col(&|x| x.fingerprint.clone()).into(),
                col(&|x| x.base.as_ref().map(|b| serde_json::to_string(b).expect("a map serialises"))).into(),
                o.iter().map(|x| x.gone).collect::<Vec<bool>>().into(),
                detail("method").into(),
                http.into(),
                detail("action").into(),
                col(&|x| x.hops.as_ref().map(|h| format!("{{{}}}", h.iter().map(i64::to_string).collect::<Vec<_>>().join(",")))).into(),
            ],
        )
        .or_raise();
    }

    /// Stores new remote ids in the user's remote-id column, under the link's origin flag.
    fn store_remote_ids(&self, link: &LinkRow) {
        let Some(column) = link.conf.remote_id_column.as_deref() else { return };
        if self.new_ids.is_empty() {
            return;
        }
        let (locals, remotes): (Vec<String>, Vec<String>) = self.new_ids.iter().cloned().unzip();
        // As the table's owner (its triggers fire), under the link's origin flag.
        origin::with_origin(&link.name, || {
            TableStatements::new(link).run(Access::StoreIds, &[column.to_string()], &[locals.into(), remotes.into()])
        });
    }
}

/// Judges each answer and records the batch.
pub fn settle(link: &LinkRow, sent: Vec<Sent>) -> Results {
    let max_attempts = link.conf.max_attempts as u32;
    let now = SystemTime::now();
    let created_id_pointer = link.conf.created_id_pointer.as_deref().unwrap_or("");
    let empty_is_gone = link.conf.empty_update_answer == "gone";
    let mut results = Results::default();
    let mut remote_deletes = Vec::new();
    for s in sent {
        let d = &s.delivery;
        // An update of a paired record (also a repeated create that found its record).
        let update = if d.action == Action::Update || s.found_id.is_some() {
            delivery::update_answer(&s.answer, empty_is_gone)
        } else {
            UpdateAnswer::Plain
        };
        let jitter = jitter_for(&d.local_key, d.attempt);
        let verdict = match (delivery::judge(&s.answer, d.attempt, jitter, now), d.action) {
            // Deleting what is already gone is done.
            (Verdict::Permanent { .. }, Action::Delete) if s.answer.status == Some(404) => {
                Verdict::Delivered(Value::Null)
            }
            (v, _) => v,
        };
        let mut o = Outcome::stopped(&d.local_key, d.seq, d.attempt, Status::Delivered, "", d.fingerprint.clone());
        o.reason = None;
        o.remote_key = d.remote_key.clone();
        o.hops = d.hops.clone();
        o.detail = Some(json!({"method": s.method, "http_status": s.answer.status, "action": d.purpose}));
        if let UpdateAnswer::Gone { why } = update {
            // Settled once the link's delete policy has been applied (`gone`).
            remote_deletes.push(gone::RemoteDelete { outcome: results.len(), why });
            o.status = Status::Ignored;
            results.push(o);
            continue;
        }
        match verdict {
            Verdict::Delivered(body) => {
                if d.action == Action::Delete {
                    o.gone = true;
                    o.reason = Some("deleted".into());
                } else {
                    o.base = d.base.clone();
                }
                if let UpdateAnswer::NoRecord { reason } = update {
                    o.reason = Some(reason);
                }
                if d.remote_key.is_none() && d.action == Action::Create {
                    let id = s
                        .found_id
                        .clone()
                        .or_else(|| delivery::created_id(&body, created_id_pointer, &link.remote_key_field));
                    match id {
                        Some(id) => {
                            if s.found_id.is_some() {
                                o.reason = Some("an earlier attempt had created it; updated".into());
                            }
                            results.new_ids.push((d.local_key.clone(), id.clone()));
                            o.remote_key = Some(id);
                        }
                        None => {
                            o.status = Status::Failed;
                            o.base = None;
                            o.reason = Some(format!(
                                "created, but the answer has no id at \"{created_id_pointer}\"; set the link's created_id_pointer"
                            ));
                        }
                    }
                }
            }
            Verdict::Retry { after, reason } if d.attempt < max_attempts => {
                results.next_retry = Some(results.next_retry.map_or(after, |t| t.min(after)));
                o.status = Status::Failed;
                o.reason = Some(reason);
                o.next_retry = Some(rfc3339(now + after));
                o.base = None;
            }
            Verdict::Retry { reason, .. } => {
                o.status = Status::Failed;
                o.reason = Some(format!("gave up after {} attempts: {reason}", d.attempt));
                o.base = None;
            }
            Verdict::Permanent { reason } => {
                o.status = Status::Failed;
                o.reason = Some(reason);
                o.base = None;
            }
        }
        results.push(o);
    }
    gone::apply(link, &mut results, remote_deletes);
    results.store_remote_ids(link);
    results.record(link.id);
    results
}

/// Spreads retries of a batch apart without a random number generator: a hash of the key.
fn jitter_for(key: &str, attempt: u32) -> f64 {
    let h = blake3::hash(format!("{key}\u{0}{attempt}").as_bytes());
    let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO);
    crate::logic::canonical::format_utc(d.as_secs() as i64, i64::from(d.subsec_micros()))
}
