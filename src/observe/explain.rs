//! `syncbridge.explain(link, local_key)`: what would happen to this record now, and why —
//! which guard would stop or pass it, its fingerprints, last touch, owners, last outcome and
//! what is waiting for it.

use crate::catalog::link::LinkRow;
use crate::error::{spi_opt, OrRaise, SyncError};
use crate::logic::delivery::{self, Shape};
use crate::logic::fingerprint;
use crate::logic::guards::{self, Outgoing};
use crate::logic::link_spec::{Direction, Guard};
use crate::logic::mapping::LAST_TOUCH_COLUMN;
use crate::logic::status::Status;
use crate::table::{Read, TableStatements};
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use serde_json::{json, Map, Value};

#[pg_extern(stable)]
#[search_path(pg_catalog, pg_temp)]
fn explain(link: &str, local_key: &str) -> JsonB {
    // SAFETY: superuser() looks up the current user's role (a syscache read), on the backend's main thread inside the
    // SQL call's transaction.
    if !unsafe { pg_sys::superuser() } {
        SyncError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied for syncbridge.explain",
            "Explaining a record reads the link's state; it needs a superuser.",
        )
        .raise();
    }
    let l = LinkRow::load_all()
        .or_raise()
        .into_iter()
        .find(|l| l.name == link)
        .unwrap_or_else(|| SyncError::no_such_link(link).raise());
    JsonB(Value::Object(explain_record(&l, local_key)))
}

fn query_json(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> Value {
    spi_opt::<JsonB>(sql, args).or_raise().map(|j| j.0).unwrap_or(Value::Null)
}

fn explain_record(link: &LinkRow, key: &str) -> Map<String, Value> {
    let guards = Guard::parse_list(&link.loop_guards).or_raise();
    let map = link.field_map().or_raise();
    let (row, row_error) = match TableStatements::new(link).rows_or_errors(vec![key]).remove(key) {
        Some(Read::Row(row)) => (Some(row), None),
        Some(Read::Unreadable(error)) => (None, Some(error)),
        None => (None, None),
    };
    let state = query_json(
        "SELECT to_jsonb(r) - 'link_id' - 'local_key' FROM syncbridge._record r WHERE link_id = $1 AND local_key = $2",
        &[link.id.into(), key.into()],
    );
    let queued = query_json(
        "SELECT to_jsonb(p) - 'link_id' - 'local_key' FROM syncbridge._pending p WHERE link_id = $1 AND local_key = $2",
        &[link.id.into(), key.into()],
    );
    let outbox = query_json(
        "SELECT jsonb_agg(jsonb_build_object('id', id, 'op', op, 'origin', origin, 'fields', fields, 'enqueued_at', enqueued_at) ORDER BY id) \
         FROM syncbridge.outbox WHERE link_id = $1 AND $2 = ANY (keys)",
        &[link.id.into(), key.into()],
    );
    let events = query_json(
        "SELECT jsonb_agg(to_jsonb(e) - 'link' - 'local_key' ORDER BY e.id DESC) FROM \
         (SELECT * FROM syncbridge.events WHERE link = $1 AND local_key = $2 ORDER BY id DESC LIMIT 5) e",
        &[link.name.as_str().into(), key.into()],
    );

    let shape = Shape { remote_key_field: &link.remote_key_field, local_id_field: None };
    let volatile = delivery::volatile_fields(&map);
    let payload = row.as_ref().map(|r| delivery::payload(r, &map, shape, None));
    let fp = payload.as_ref().map(|p| fingerprint::of_record(&Value::Object(p.clone()), &volatile));
    let last_touch = row.as_ref().and_then(|r| r.get(LAST_TOUCH_COLUMN)).and_then(Value::as_str).map(str::to_owned);
    let has_pending = !outbox.is_null() || !queued.is_null();
    let capture_off = spi_opt::<String>("SELECT syncbridge._capture_problem($1)", &[link.id.into()]).or_raise();
    let outbound = outbound_verdict(
        link,
        &guards,
        &state,
        &queued,
        fp.as_deref(),
        last_touch.as_deref(),
        row.is_some(),
        has_pending,
        capture_off.as_deref(),
    );
    let inbound = inbound_verdict(link, &guards, &state);

    let owners: Map<String, Value> =
        map.fields.iter().filter_map(|f| f.owner.map(|o| (f.remote.clone(), json!(o.name())))).collect();
    let mut out = Map::new();
    out.insert("link".into(), json!(link.name));
    out.insert("local_key".into(), json!(key));
    out.insert("direction".into(), json!(link.direction));
    let state_name = match (link.paused, &capture_off) {
        (true, _) => "paused",
        (false, Some(_)) => "capture_off",
        (false, None) => "active",
    };
    out.insert("state".into(), json!(state_name));
    if let Some(problem) = &capture_off {
        out.insert("capture".into(), json!(format!("off: {problem}; local edits are not captured")));
    }
    out.insert("loop_guards".into(), json!(guards.iter().map(|g| g.name()).collect::<Vec<_>>()));
    out.insert("row_exists".into(), json!(row.is_some()));
    if let Some(error) = row_error {
        // The worker fails this record (and tries again) rather than take it as deleted.
        out.insert("row_error".into(), json!(error));
    }
    out.insert("last_touch".into(), json!(last_touch));
    out.insert("fingerprint".into(), json!(fp));
    out.insert("payload".into(), payload.map(Value::Object).unwrap_or(Value::Null));
    out.insert("owners".into(), Value::Object(owners));
    out.insert("record_state".into(), state);
    out.insert("pending".into(), json!({"outbox": outbox, "queued": queued}));
    out.insert("last_events".into(), events);
    out.insert("outbound".into(), outbound);
    out.insert("inbound".into(), inbound);
    out
}

#[allow(clippy::too_many_arguments)]
fn outbound_verdict(
    link: &LinkRow,
    guards: &[Guard],
    state: &Value,
    queued: &Value,
    fp: Option<&str>,
    last_touch: Option<&str>,
    exists: bool,
    has_pending: bool,
    capture_off: Option<&str>,
) -> Value {
    let verdict = |v: &str, why: String| json!({"verdict": v, "why": why});
    if !Direction::parse(&link.direction).map(Direction::sends).unwrap_or(false) {
        return verdict("stays", format!("link {} does not send (direction {})", link.name, link.direction));
    }
    if link.paused {
        return verdict(
            "waits",
            format!("link {} is paused; SELECT syncbridge.resume_link('{}')", link.name, link.name),
        );
    }
    if queued.get("failed") == Some(&Value::Bool(true)) {
        return verdict(
            "dead-lettered",
            format!(
                "failed for good ({}); SELECT syncbridge.retry_failed('{}') queues it again",
                queued["last_error"].as_str().unwrap_or("no message"),
                link.name
            ),
        );
    }
    let remote_key = state.get("remote_key").and_then(Value::as_str);
    if !exists {
        return match (remote_key, has_pending) {
            (Some(id), true) => verdict("sends", format!("deleted locally: remote record {id} will be deleted")),
            (Some(id), false) => verdict("stays", format!("deleted locally; remote record {id} has been dealt with")),
            (None, _) => verdict("stays", "no such row, and it never reached the remote".into()),
        };
    }
    let quarantined = state.get("quarantined_at").is_some_and(|v| !v.is_null());
    if quarantined {
        let reason = state["quarantine_reason"].as_str().unwrap_or("quarantined by the loop detector");
        return verdict(
            Status::Quarantined.name(),
            format!("{reason}; a user edit or SELECT syncbridge.release('{}', <key>) lifts it", link.name),
        );
    }
    if let (Some(problem), false) = (capture_off, has_pending) {
        return verdict(
            "stays",
            format!(
                "capture is off ({problem}): local edits are not captured; ALTER TABLE ... ENABLE TRIGGER ... turns it on again (a dropped trigger comes back with SELECT syncbridge.alter_link('{}', '{{\"direction\": \"{}\"}}')), then SELECT syncbridge.backfill('{}') sends what was missed",
                link.name, link.direction, link.name
            ),
        );
    }
    let out = Outgoing {
        fingerprint: fp.unwrap_or_default(),
        last_fingerprint: state.get("out_fingerprint").and_then(Value::as_str),
        last_status: state.get("out_status").and_then(Value::as_str).and_then(Status::parse),
        last_touch: if link.track_columns { last_touch } else { None },
    };
    let action = if remote_key.is_some() { "update" } else { "create" };
    match guards::outbound(guards, &out) {
        Err(stop) if !has_pending => {
            verdict("stays", format!("nothing is waiting for it, and a send now would be stopped: {}", stop.reason()))
        }
        Err(stop) => verdict(
            if stop == guards::Stop::SameFingerprint { Status::Blocked.name() } else { Status::Ignored.name() },
            stop.reason().to_string(),
        ),
        Ok(()) if has_pending => verdict("sends", format!("a change is waiting; the guards let it pass ({action})")),
        Ok(()) => {
            verdict("stays", format!("nothing is waiting for it; its next change would pass the guards ({action})"))
        }
    }
}

fn inbound_verdict(link: &LinkRow, guards: &[Guard], state: &Value) -> Value {
    if !Direction::parse(&link.direction).map(Direction::receives).unwrap_or(false) {
        return json!({"verdict": "refused", "why": format!("link {} does not receive (direction {})", link.name, link.direction)});
    }
    let last = state.get("in_status").and_then(Value::as_str);
    let mut why = Vec::new();
    if guards.contains(&Guard::Fingerprint) {
        match (state.get("in_fingerprint").and_then(Value::as_str), last.and_then(Status::parse)) {
            (Some(fp), Some(Status::Delivered | Status::Conflict)) => {
                why.push(format!("a record with fingerprint {fp} (the last one received) would be blocked"))
            }
            (Some(_), Some(status)) => {
                why.push(format!("the last record received was {status:?}; the same one would be applied again"))
            }
            _ => why.push("nothing received yet".into()),
        }
    }
    if guards.contains(&Guard::Echo) {
        why.push("a record equal to the row over its fields would be ignored (no change)".into());
    }
    if guards.contains(&Guard::Context) {
        why.push(format!("what it writes carries the origin flag '{}', so capture does not send it back", link.name));
    }
    json!({"verdict": "applies", "last_status": last, "why": why})
}
