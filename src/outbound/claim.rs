//! Step 1: claim due records and decide what travels (SPI, worker main thread).

use super::plan::{Action, Delivery};
use super::settle::{self, Outcome, Results};
use crate::catalog::link::LinkRow;
use crate::error::{OrRaise, Result};
use crate::logic::delivery::{self, Shape};
use crate::logic::fingerprint;
use crate::logic::guards::{self, detect, Detector, Outgoing, Travel};
use crate::logic::link_spec::Guard;
use crate::logic::mapping::LAST_TOUCH_COLUMN;
use crate::logic::status::Status;
use crate::spi::jsonb::Jsonb;
use crate::table::{Read, TableStatements};
use pgrx::prelude::*;
use serde_json::{Map, Value};

/// A claimed `_pending` row.
struct Claimed {
    local_key: String,
    seq: i64,
    fields: Option<Vec<String>>,
    writeback: bool,
    attempt: i32,
    remote_key: Option<String>,
    out_fingerprint: Option<String>,
    out_status: Option<String>,
    user_edit: bool,
    came_back: bool,
    hop_times: Vec<i64>,
    quarantined: bool,
    /// A create of this record went out before and its remote id is still unknown.
    create_sent_before: bool,
    /// The base snapshot: the version both sides last agreed on (remote field names).
    base: Option<Map<String, Value>>,
    /// The remote record's version from its last answer (`ETag`).
    etag: Option<String>,
    /// This version was held back once while the remote's changed record was applied first.
    held: bool,
}

/// Claims up to `limit` due records of `link` and returns the deliveries to send. Records
/// the guards stop (blocked, ignored) are settled here, in the same transaction.
pub fn claim(link: &LinkRow, limit: i32) -> Result<Vec<Delivery>> {
    let claimed = Spi::connect(|c| -> std::result::Result<Vec<Claimed>, pgrx::spi::Error> {
        let rows = c.select("SELECT * FROM syncbridge._claim($1, $2)", None, &[link.id.into(), limit.into()])?;
        let mut out = Vec::new();
        for r in rows {
            out.push(Claimed {
                local_key: r.get(1)?.unwrap_or_default(),
                seq: r.get(2)?.unwrap_or_default(),
                fields: r.get::<Vec<String>>(3)?,
                writeback: r.get(4)?.unwrap_or(false),
                attempt: r.get(5)?.unwrap_or(1),
                remote_key: r.get(6)?,
                out_fingerprint: r.get(7)?,
                out_status: r.get(8)?,
                user_edit: r.get(9)?.unwrap_or(false),
                came_back: r.get(10)?.unwrap_or(false),
                hop_times: r.get::<Vec<i64>>(11)?.unwrap_or_default(),
                quarantined: r.get::<pgrx::datum::TimestampWithTimeZone>(12)?.is_some(),
                create_sent_before: r.get::<bool>(13)?.unwrap_or(false),
                base: r.get::<Jsonb>(14)?.and_then(|j| match j.0 {
                    Value::Object(m) => Some(m),
                    _ => None,
                }),
                etag: r.get(15)?,
                held: r.get(16)?.unwrap_or(false),
            });
        }
        Ok(out)
    })
    .or_raise();
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let map = &link.field_map()?;

    // Read as the table's owner: its key type's input, domain checks and type output run there.
    // A row it cannot read is that record's failure, never a deletion.
    let rows = TableStatements::new(link).rows_or_errors(claimed.iter().map(|c| c.local_key.as_str()).collect());
    let guards = Guard::parse_list(&link.loop_guards)?;
    let volatile = delivery::volatile_fields(map);
    let local_id_field = link.conf.local_id_field.as_deref();
    let with_id = Shape { remote_key_field: &link.remote_key_field, local_id_field };
    let without_id = Shape { local_id_field: None, ..with_id };
    let detector = link.conf.detector_on().then_some(Detector {
        max_hops: link.conf.detector_hops as usize,
        window_secs: link.conf.detector_window as i64,
    });
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);

    let mut deliveries = Vec::new();
    let mut stopped = Results::default();
    for c in claimed {
        let attempt = c.attempt.max(1) as u32;
        let row = match rows.get(&c.local_key) {
            Some(Read::Row(row)) => Some(row),
            Some(Read::Unreadable(error)) => {
                stopped.push(unreadable(link, &c, attempt, error));
                continue;
            }
            None => None,
        };
        let Some(row) = row else {
            // Gone locally: delete it remotely, if it ever got there.
            match c.remote_key {
                Some(remote_key) => deliveries.push(Delivery {
                    local_key: c.local_key,
                    seq: c.seq,
                    attempt,
                    remote_key: Some(remote_key),
                    action: Action::Delete,
                    purpose: "delete",
                    body: None,
                    fingerprint: None,
                    base: None,
                    lookup: false,
                    partial: false,
                    agreed: None,
                    etag: None,
                    hops: None,
                }),
                None => stopped.push(
                    Outcome::stopped(
                        &c.local_key,
                        c.seq,
                        attempt,
                        Status::Ignored,
                        "deleted before it reached the remote",
                        None,
                    )
                    .gone(),
                ),
            }
            continue;
        };
        let hops = match detector.map(|d| detect(d, now, c.hop_times.clone(), c.user_edit, c.came_back, c.quarantined))
        {
            None => None,
            Some(Travel::Go { hops }) => Some(hops.times().to_vec()),
            Some(Travel::Quarantine { hops, reason }) => {
                if !c.quarantined {
                    // In the worker, inside the link's span: "pg_syncbridge: link crm: record 7 quarantined: ...".
                    tracing::warn!("record {} quarantined: {reason}", c.local_key);
                }
                let mut o = Outcome::stopped(&c.local_key, c.seq, attempt, Status::Quarantined, &reason, None);
                o.remote_key = c.remote_key.clone();
                o.hops = Some(hops.times().to_vec());
                stopped.push(o);
                continue;
            }
        };
        let whole = delivery::payload(row, map, without_id, None);
        let fp = fingerprint::of_record(&Value::Object(whole.clone()), &volatile);
        let partial = c.fields.is_some();
        if !partial {
            let touch = if link.track_columns { row.get(LAST_TOUCH_COLUMN).and_then(Value::as_str) } else { None };
            let out = Outgoing {
                fingerprint: &fp,
                last_fingerprint: c.out_fingerprint.as_deref(),
                last_status: c.out_status.as_deref().and_then(Status::parse),
                last_touch: touch,
            };
            if let Err(stop) = guards::outbound(&guards, &out) {
                let status = if stop == guards::Stop::SameFingerprint { Status::Blocked } else { Status::Ignored };
                let mut o = Outcome::stopped(&c.local_key, c.seq, attempt, status, stop.reason(), Some(fp));
                o.remote_key = c.remote_key.clone();
                stopped.push(o);
                continue;
            }
        }
        let shape = if c.writeback { with_id } else { without_id };
        let (action, purpose, body) = match (&c.remote_key, &c.fields) {
            (None, _) => (Action::Create, "create", delivery::payload(row, map, with_id, None)),
            (Some(_), Some(fields)) if fields.is_empty() => {
                (Action::Update, "writeback", delivery::payload(row, map, shape, Some(fields)))
            }
            (Some(_), Some(fields)) => (Action::Update, "reflect", delivery::payload(row, map, shape, Some(fields))),
            // An update carries what changed since the base, so fields the remote changed
            // meanwhile (and the local side did not) are not overwritten.
            (Some(_), None) => match &c.base {
                Some(base) => {
                    let changed = delivery::changed_fields(&whole, base, &volatile);
                    if changed.is_empty() {
                        let reason = "nothing differs from the version both sides hold";
                        let mut o = Outcome::stopped(&c.local_key, c.seq, attempt, Status::Ignored, reason, Some(fp));
                        o.remote_key = c.remote_key.clone();
                        stopped.push(o);
                        continue;
                    }
                    (Action::Update, "update", delivery::payload(row, map, shape, Some(&changed)))
                }
                None => (Action::Update, "update", delivery::payload(row, map, shape, None)),
            },
        };
        let partial = whole.keys().any(|k| !body.contains_key(k));
        deliveries.push(Delivery {
            local_key: c.local_key,
            seq: c.seq,
            attempt,
            // An earlier create may have reached the remote: look it up first (_claim).
            lookup: action == Action::Create && c.create_sent_before,
            partial,
            // Held back once for this version already: no second time.
            agreed: if c.held { None } else { c.base },
            etag: c.etag,
            remote_key: c.remote_key,
            action,
            purpose,
            body: Some(body),
            fingerprint: Some(fp),
            base: Some(whole),
            hops,
        });
    }
    stopped.record(link.id);
    Ok(deliveries)
}

/// A record whose row is there but cannot be read: failed, and tried again with backoff up
/// to the link's `max_attempts` (then dead-lettered, to be retried by hand), its pairing kept.
fn unreadable(link: &LinkRow, c: &Claimed, attempt: u32, error: &str) -> Outcome {
    let reason = format!("the local row cannot be read: {error}");
    tracing::warn!("record {}: {reason}", c.local_key);
    let mut o = Outcome::stopped(&c.local_key, c.seq, attempt, Status::Failed, &reason, None);
    if u64::from(attempt) < link.conf.max_attempts {
        let after = delivery::backoff(attempt, settle::jitter_for(&c.local_key, attempt));
        o.next_retry = Some(settle::rfc3339(std::time::SystemTime::now() + after));
    } else {
        o.reason = Some(format!("gave up after {attempt} attempts: {reason}"));
    }
    o
}
