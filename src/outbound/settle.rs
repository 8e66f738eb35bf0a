//! Step 3: judge the answers and record them (SPI, worker main thread): the id map (new remote
//! ids, also into the user's `remote_id_column` under the origin flag), fingerprints and base
//! snapshots, `_pending` (done, retry later, dead-lettered), and one event per record. An
//! update whose remote record is gone (a 404) applies the link's delete policy (`gone`).

mod gone;

use super::plan::{Action, Delivery, Sent};
use crate::catalog::link::LinkRow;
use crate::error::OrRaise;
use crate::logic::delivery::{self, UpdateAnswer, Verdict};
use crate::logic::outage::{self, Failure, Fate, Limits};
use crate::logic::status::Status;
use crate::origin;
use crate::table::{Access, TableStatements};
use pgrx::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// What the remote acknowledged of a delivered record, to go over its base snapshot: the
/// fields the request carried, as they were when it was claimed (a create or a whole update:
/// the whole record). Only those: the base may have moved since the claim (a pull applied a
/// remote edit while the request was on its way), and the claim's values of the other fields
/// would put the base back and make that edit look like a local one.
fn acknowledged(d: &Delivery) -> Option<Map<String, Value>> {
    let whole = d.base.as_ref()?;
    match &d.body {
        Some(body) if d.partial => {
            Some(whole.iter().filter(|(k, _)| body.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        _ => Some(whole.clone()),
    }
}

/// Reason of an update not sent because the read before it found the remote record changed.
pub const SEEN_FIRST: &str = "not sent yet: the remote changed the record since the last sync (before_update = read); \
its version was applied first, and the update goes again with what won";

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
    /// The attempt does not count and the record stays pending: a failure spared for the
    /// link's outage, or an update held back while the remote's version is applied first.
    pub spared: bool,
    /// The remote record's version from its answer (`ETag`), kept for `If-Match`.
    pub etag: Option<String>,
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
            spared: false,
            etag: None,
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
    /// Local keys whose earlier create a lookup found again.
    found: Vec<String>,
    /// (local key, remote key): remote records a lookup found carrying the same local id.
    duplicates: Vec<(String, String)>,
    /// The soonest retry among the failures, if any will be retried.
    pub next_retry: Option<Duration>,
    /// Some answer showed the remote is there (2xx, 4xx): the link is available.
    pub reached: bool,
    /// Failures spared for an outage (nothing showed the remote is there).
    pub spared: usize,
    /// Records dead-lettered because the outage outlasted `outage_budget`.
    pub past_budget: usize,
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

    /// The reason of the first spared failure (what the outage looks like), if any.
    pub fn first_spared(&self) -> Option<&str> {
        self.outcomes.iter().find(|o| o.spared).and_then(|o| o.reason.as_deref())
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
            "SELECT syncbridge._settle($1, $2, $3, $4, $5, $6, $7::timestamptz[], $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
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
                o.iter().map(|x| x.spared).collect::<Vec<bool>>().into(),
                col(&|x| x.etag.clone()).into(),
            ],
        )
        .or_raise();
    }

    /// New ids the remote gave to more than one record (in this batch, or one already paired
    /// with another record): a broken remote. Those records are not paired (the id map could
    /// not hold it, and it would pair a row with another row's record); they fail with the
    /// reason, and their next attempt looks them up, within `max_attempts`. The rest of the
    /// batch settles.
    fn refuse_shared_ids(&mut self, link: &LinkRow, max_attempts: u32, now: SystemTime) {
        if self.new_ids.is_empty() {
            return;
        }
        let mut by_id: HashMap<&str, Vec<&str>> = HashMap::new();
        for (local, remote) in &self.new_ids {
            by_id.entry(remote.as_str()).or_default().push(local.as_str());
        }
        let ids: Vec<&str> = by_id.keys().copied().collect();
        let paired: HashMap<String, String> = Spi::connect(|c| {
            let rows = c.select(
                "SELECT remote_key, local_key FROM syncbridge._records_by_remote_key($1, $2)",
                None,
                &[link.id.into(), ids.into()],
            )?;
            let mut out = HashMap::new();
            for r in rows {
                if let (Some(remote), Some(local)) = (r.get::<String>(1)?, r.get::<String>(2)?) {
                    out.insert(remote, local);
                }
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
        .or_raise();
        let mut refused: HashMap<String, String> = HashMap::new();
        for (remote, locals) in &by_id {
            let other = paired.get(*remote).filter(|l| !locals.contains(&l.as_str()));
            if locals.len() < 2 && other.is_none() {
                continue;
            }
            let mut all: Vec<&str> = locals.clone();
            all.extend(other.map(String::as_str));
            let reason = format!(
                "the remote answered the same id {remote} for records {}: not paired; the next attempt looks each up",
                all.join(", ")
            );
            for local in locals {
                refused.insert(local.to_string(), reason.clone());
            }
        }
        if refused.is_empty() {
            return;
        }
        self.new_ids.retain(|(local, _)| !refused.contains_key(local));
        self.found.retain(|local| !refused.contains_key(local));
        for o in self.outcomes.iter_mut() {
            let Some(reason) = refused.get(&o.local_key) else { continue };
            tracing::warn!("record {}: {reason}", o.local_key);
            o.status = Status::Failed;
            o.remote_key = None;
            o.base = None;
            if o.attempt < max_attempts {
                let after = delivery::backoff(o.attempt, jitter_for(&o.local_key, o.attempt));
                self.next_retry = Some(self.next_retry.map_or(after, |t| t.min(after)));
                o.next_retry = Some(rfc3339(now + after));
                o.reason = Some(reason.clone());
            } else {
                o.reason = Some(format!("gave up after {} attempts: {reason}", o.attempt));
            }
        }
    }

    /// What lookups saw: several remote records for one local id, or one again.
    fn record_duplicates(&self, link_id: i64) {
        if !self.duplicates.is_empty() {
            let (locals, remotes): (Vec<String>, Vec<String>) = self.duplicates.iter().cloned().unzip();
            Spi::run_with_args(
                "SELECT syncbridge._duplicates_seen($1, $2, $3, 'lookup')",
                &[link_id.into(), locals.into(), remotes.into()],
            )
            .or_raise();
        }
        if !self.found.is_empty() {
            Spi::run_with_args(
                "SELECT syncbridge._duplicates_resolved($1, $2)",
                &[link_id.into(), self.found.clone().into()],
            )
            .or_raise();
        }
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
    let limits = Limits {
        max_attempts: link.conf.max_attempts as u32,
        budget: Duration::from_secs(link.conf.outage_budget),
        probe_max: Duration::from_secs(link.conf.outage_probe_max),
    };
    let now = SystemTime::now();
    let created_id_pointer = link.conf.created_id_pointer.as_deref().unwrap_or("");
    let mut results = Results { reached: sent.iter().any(|s| outage::reached(&s.answer)), ..Default::default() };
    // What an outage needs to know, read only when some answer did not reach the remote.
    let (pasts, out_for) = if sent.iter().all(|s| outage::reached(&s.answer)) {
        (HashMap::new(), None)
    } else {
        failure_history(link.id, sent.iter().map(|s| s.delivery.local_key.clone()).collect())
    };
    let empty_is_gone = link.conf.empty_update_answer == "gone";
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
        o.etag = s.answer.etag.clone().filter(|_| matches!(s.answer.status, Some(200..=299)));
        if s.seen.is_some() {
            // Its record as read was applied first (the worker did, before this settlement):
            // due again at once, its attempt uncounted, to carry what won.
            o.status = Status::Ignored;
            o.reason = Some(SEEN_FIRST.into());
            o.spared = true;
            results.push(o);
            continue;
        }
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
                    o.base = acknowledged(d);
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
                                results.found.push(d.local_key.clone());
                            }
                            results.new_ids.push((d.local_key.clone(), id.clone()));
                            o.remote_key = Some(id);
                        }
                        None => {
                            // Created, but which record is it? Never created blindly again:
                            // the next attempt looks it up (_pending.create_sent_at).
                            let what = if s.answer.body.trim().is_empty() || body.is_null() {
                                "the answer is not JSON".to_string()
                            } else {
                                format!("the answer has no id at \"{created_id_pointer}\"")
                            };
                            o.status = Status::Failed;
                            o.base = None;
                            if link.conf.local_id_field.is_none() {
                                o.reason = Some(format!(
                                    "created, id unknown: {what}; set the link's created_id_pointer, and local_id_field so that such a record can be looked up"
                                ));
                            } else if d.attempt < limits.max_attempts {
                                let after = delivery::backoff(d.attempt, jitter);
                                results.next_retry = Some(results.next_retry.map_or(after, |t| t.min(after)));
                                o.next_retry = Some(rfc3339(now + after));
                                o.reason = Some(format!(
                                    "created, id unknown: {what} (set the link's created_id_pointer); the next attempt looks it up"
                                ));
                            } else {
                                o.reason = Some(format!(
                                    "gave up after {} attempts: created, id unknown: {what} (set the link's created_id_pointer); an edit or retry_failed looks it up",
                                    d.attempt
                                ));
                            }
                        }
                    }
                }
            }
            Verdict::Retry { after, reason } => {
                o.status = Status::Failed;
                o.base = None;
                let (spared, link_ok_since) = pasts.get(&d.local_key).copied().unwrap_or((0, false));
                let failure = Failure {
                    attempt: d.attempt,
                    spared,
                    batch_reached: results.reached,
                    link_ok_since,
                    outage: out_for,
                };
                match outage::fate(failure, limits, after, &reason) {
                    Fate::Retry { after, spared } => {
                        results.next_retry = Some(results.next_retry.map_or(after, |t| t.min(after)));
                        results.spared += usize::from(spared);
                        o.spared = spared;
                        o.reason = Some(reason);
                        o.next_retry = Some(rfc3339(now + after));
                    }
                    Fate::GiveUp { reason } => {
                        results.past_budget += usize::from(out_for.is_some_and(|t| t > limits.budget));
                        o.reason = Some(reason);
                    }
                }
            }
            Verdict::Permanent { reason } => {
                o.status = Status::Failed;
                o.reason = Some(reason);
                o.base = None;
            }
        }
        if !s.duplicates.is_empty() {
            results.duplicates.extend(s.duplicates.iter().map(|r| (d.local_key.clone(), r.clone())));
        }
        results.push(o);
    }
    results.refuse_shared_ids(link, limits.max_attempts, now);
    gone::apply(link, &mut results, remote_deletes);
    results.store_remote_ids(link);
    results.record(link.id);
    results.record_duplicates(link.id);
    results
}

/// Per record (by local key): its attempts spared so far, and whether the link succeeded
/// since its previous failure; and how long the link has been unavailable, if it is.
fn failure_history(link_id: i64, keys: Vec<String>) -> (HashMap<String, (u32, bool)>, Option<Duration>) {
    let pasts = Spi::connect(|c| -> std::result::Result<_, pgrx::spi::Error> {
        let mut pasts = HashMap::new();
        let rows = c.select(
            "SELECT p.local_key, p.spared, coalesce(s.last_success_at >= p.last_failed_at, false) \
             FROM syncbridge._pending p LEFT JOIN syncbridge._link_state s ON s.link_id = p.link_id \
             WHERE p.link_id = $1 AND p.local_key = ANY ($2)",
            None,
            &[link_id.into(), keys.into()],
        )?;
        for r in rows {
            let key: String = r.get(1)?.unwrap_or_default();
            pasts.insert(key, (r.get::<i32>(2)?.unwrap_or(0).max(0) as u32, r.get::<bool>(3)?.unwrap_or(false)));
        }
        Ok(pasts)
    })
    .or_raise();
    let out = crate::error::spi_opt::<f64>(
        "SELECT extract(epoch FROM now() - unavailable_since)::float8 FROM syncbridge._link_state WHERE link_id = $1",
        &[link_id.into()],
    )
    .or_raise()
    .map(|secs| Duration::from_secs_f64(secs.max(0.0)));
    (pasts, out)
}

/// Spreads retries of a batch apart without a random number generator: a hash of the key.
pub(crate) fn jitter_for(key: &str, attempt: u32) -> f64 {
    let h = blake3::hash(format!("{key}\u{0}{attempt}").as_bytes());
    let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO);
    crate::logic::canonical::format_utc(d.as_secs() as i64, i64::from(d.subsec_micros()))
}
