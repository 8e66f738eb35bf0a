//! The webhook listener (`syncbridge.listen`, off by default): the worker takes its remotes'
//! webhooks — records pushed, or a nudge to pull now — and serves `/metrics` and `/health`.
//!
//! `server` is the HTTP side, on the worker's tokio runtime, and never touches PostgreSQL.
//! Everything else happens here, on the worker's main thread, one request at a time, each in
//! a transaction of its own (the engine calls [`answer`] inside one and sends the reply only
//! after the commit, so a request that got a 2xx is applied, and one cut off by a crash is
//! not): the link's proof (its `webhook_secret`, read per request, so `set_secret` applies at
//! once), a repeated delivery, stale records, and the apply itself through
//! `inbound::apply_records` — the same guards, contention, events and writebacks as
//! `apply_inbound` and the pull.
//!
//! One worker serves one database: the worker of the n-th database of `syncbridge.database`
//! listens on the port of `syncbridge.listen` plus n − 1 (`logic::webhook::listen_addr`).

pub mod server;

use crate::catalog::link::LinkRow;
use crate::error::{spi_opt, OrRaise};
use crate::inbound::Row;
use crate::logic::link_spec::Direction;
use crate::logic::webhook::{self, Auth, BadBody, Route, Stamp};
use crate::settings;
use crate::spi::jsonb::Jsonb;
use crate::spi::plans;
use pgrx::prelude::*;
use serde_json::{json, Value};
use server::{Reply, Request};
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

/// Every refusal of a caller's proof, and every unknown link, looks like this.
const UNAUTHORIZED: &str = "unauthorized";
/// A delivery id is remembered this long; a body without one (keyed by its hash) this long.
pub const DELIVERY_ID_WINDOW_MIN: i32 = 24 * 60;
pub const BODY_HASH_WINDOW_MIN: i32 = 10;

/// The running listener: requests for the main thread arrive here.
pub struct Listener {
    pub rx: mpsc::Receiver<Request>,
}

/// Starts the listener of the worker of database `db`, if `syncbridge.listen` is set. A bad
/// setting or a taken port is logged, and the worker runs without it.
pub fn start(rt: &tokio::runtime::Handle, db: &str, wake: fn()) -> Option<Listener> {
    let setting = settings::listen()?;
    let index = settings::databases().iter().position(|d| d == db).unwrap_or(0);
    let addr = match webhook::listen_addr(&setting, index) {
        Ok(a) => a,
        Err(e) => {
            pgrx::warning!("pg_syncbridge: {e}; the worker for \"{db}\" does not listen");
            return None;
        }
    };
    let limits = server::Limits {
        max_body: settings::LISTEN_MAX_BODY_KB.get().max(1) as usize * 1024,
        max_in_flight: settings::LISTEN_MAX_REQUESTS.get().max(1) as usize,
        read_timeout: Duration::from_millis(settings::LISTEN_TIMEOUT_MS.get().max(100) as u64),
    };
    let (tx, rx) = mpsc::channel();
    // A worker restarted after pg_terminate_backend or a crash can start while its
    // predecessor still holds the port for a moment: try again for a few seconds.
    let mut tries = 0;
    let bound = loop {
        match server::start(rt, addr, limits, tx.clone(), wake) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < BIND_TRIES => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            other => break other,
        }
    };
    match bound {
        Ok(bound) => {
            log!("pg_syncbridge: worker for database \"{db}\" listens on http://{bound}");
            Some(Listener { rx })
        }
        Err(e) => {
            pgrx::warning!("pg_syncbridge: cannot listen on {addr}: {e}; the worker for \"{db}\" does not listen");
            None
        }
    }
}

/// Binding a port that is in use is tried this many more times, half a second apart.
const BIND_TRIES: u32 = 20;

/// What the engine does besides replying.
#[derive(Debug, Default)]
pub struct Effect {
    /// Pull this link now.
    pub nudge: Option<i64>,
}

/// Answers one request, in the caller's transaction. `installed`: the extension exists in
/// this database.
pub fn answer(req: &Request, installed: bool) -> (Reply, Effect) {
    if !installed {
        return match req.route {
            Route::Health => (Reply::json(200, json!({"status": "ok", "installed": false})), Effect::default()),
            _ => (Reply::error(503, "pg_syncbridge is not installed in this database"), Effect::default()),
        };
    }
    match &req.route {
        Route::Metrics | Route::Health if !token_ok(req) => (Reply::error(401, UNAUTHORIZED), Effect::default()),
        Route::Metrics => {
            let text = spi_opt::<String>("SELECT syncbridge.metrics()", &[]).or_raise().unwrap_or_default();
            (Reply { status: 200, content_type: "text/plain; version=0.0.4", body: text }, Effect::default())
        }
        Route::Health => (Reply::json(200, health()), Effect::default()),
        Route::Records(name) | Route::Nudge(name) => {
            let Some(link) = LinkRow::load_all().or_raise().into_iter().find(|l| &l.name == name) else {
                return (Reply::error(401, UNAUTHORIZED), Effect::default());
            };
            if !link_auth_ok(&link, req) {
                return (Reply::error(401, UNAUTHORIZED), Effect::default());
            }
            let receives = Direction::parse(&link.direction).is_ok_and(|d| d.receives());
            if !receives || link.paused {
                let why = if link.paused { "the link is paused" } else { "the link does not receive records" };
                return (Reply::error(409, why), Effect::default());
            }
            match req.route {
                Route::Nudge(_) if !link.conf.pull => {
                    (Reply::error(409, "the link does not pull (its \"pull\" setting is false)"), Effect::default())
                }
                Route::Nudge(_) => (Reply::json(202, json!({"nudged": link.name})), Effect { nudge: Some(link.id) }),
                _ => (push(&link, req), Effect::default()),
            }
        }
    }
}

/// `/metrics` and `/health` need `syncbridge.listen_token`'s secret as a bearer token, when
/// it names one (a secret that is not set lets no one in).
fn token_ok(req: &Request) -> bool {
    let Some(name) = settings::listen_token() else { return true };
    match secret(&name) {
        Some(value) => webhook::check(&Auth::Bearer { secret: &value }, &req.headers, &req.body, now()).is_ok(),
        None => false,
    }
}

fn link_auth_ok(link: &LinkRow, req: &Request) -> bool {
    let conf = &link.conf;
    let Some(value) = conf.webhook_secret.as_deref().and_then(secret) else { return false };
    let auth = match conf.webhook_auth.as_str() {
        "hmac" => Auth::Hmac {
            secret: &value,
            header: &conf.webhook_signature_header,
            prefix: conf.webhook_signature_prefix.as_deref().unwrap_or(""),
            timestamp: conf
                .webhook_timestamp_header
                .as_deref()
                .map(|header| Stamp { header, tolerance: conf.webhook_tolerance as i64 }),
        },
        _ => Auth::Bearer { secret: &value },
    };
    match webhook::check(&auth, &req.headers, &req.body, now()) {
        Ok(()) => true,
        Err(why) => {
            tracing::debug!("webhook for link \"{}\" refused: {why}", link.name);
            false
        }
    }
}

fn secret(name: &str) -> Option<String> {
    spi_opt::<String>("SELECT value FROM syncbridge._secret WHERE name = $1", &[name.into()]).ok().flatten()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn health() -> Value {
    spi_opt::<Jsonb>(
        "SELECT jsonb_build_object('status', 'ok', 'database', current_database(), 'links', coalesce(( \
            SELECT jsonb_agg(jsonb_build_object('link', s.link, 'state', s.state, 'queue_depth', s.queue_depth, \
                   'dead_letters', s.dead_letters, 'last_success_at', s.last_success_at, 'last_pull_at', s.last_pull_at) \
                   ORDER BY s.link) \
            FROM syncbridge.link_status s), '[]'::jsonb))",
        &[],
    )
    .or_raise()
    .map_or(Value::Null, |j| j.0)
}

/// Applies a push: its records, less those a newer version of has been applied already,
/// unless the same delivery came before (then its first answer again, and nothing applied).
fn push(link: &LinkRow, req: &Request) -> Reply {
    let max = settings::LISTEN_MAX_RECORDS.get().max(1) as usize;
    let records = match webhook::records(&req.body, &link.conf.list_pointer, max) {
        Ok(r) => r,
        Err(BadBody::Malformed(why)) => return Reply::error(400, &format!("{why}; nothing was applied")),
        Err(BadBody::TooMany(n)) => {
            return Reply::error(
                413,
                &format!("{n} records; at most {max} per request (syncbridge.listen_max_records)"),
            )
        }
    };
    let (key, by_id) = webhook::delivery_key(&req.headers, &req.body);
    let window = if by_id { DELIVERY_ID_WINDOW_MIN } else { BODY_HASH_WINDOW_MIN };
    let seen = spi_opt::<Jsonb>(
        "SELECT answer FROM syncbridge._webhook_delivery WHERE link_id = $1 AND key = $2 AND at > now() - make_interval(mins => $3)",
        &[link.id.into(), key.as_str().into(), window.into()],
    )
    .or_raise();
    if let Some(Jsonb(mut first)) = seen {
        if let Some(o) = first.as_object_mut() {
            o.insert("duplicate".into(), Value::Bool(true));
        }
        return Reply::json(200, first);
    }
    let times = times_of(link, &records);
    let applied_times = applied_times(link.id, &times);
    let mut keep = Vec::with_capacity(records.len());
    let mut results: Vec<Option<Row>> = Vec::with_capacity(records.len());
    for (i, rec) in records.into_iter().enumerate() {
        match &times[i] {
            Some((k, us)) if applied_times.get(k).is_some_and(|last| last > us) => results.push(Some((
                Some(k.clone()),
                None,
                "ignored".into(),
                Some("stale delivery: a newer version of the record was applied already".into()),
            ))),
            _ => {
                results.push(None);
                keep.push(rec);
            }
        }
    }
    let rows = if keep.is_empty() {
        Vec::new()
    } else {
        match crate::inbound::apply_records(&link.name, Value::Array(keep)) {
            Ok(rows) => rows,
            Err(e) => return Reply::error(422, &e.to_string()),
        }
    };
    let mut rows = rows.into_iter();
    let results: Vec<Row> = results.into_iter().map(|r| r.or_else(|| rows.next()).expect("a row per record")).collect();
    record_times(link.id, &times, &results);
    let answer = json!({
        "results": results.iter().map(|(remote_key, local_key, status, reason)| json!({
            "remote_key": remote_key, "local_key": local_key, "status": status, "reason": reason,
        })).collect::<Vec<_>>(),
    });
    Spi::run_with_args(
        "INSERT INTO syncbridge._webhook_delivery AS d (link_id, key, answer) VALUES ($1, $2, $3) \
         ON CONFLICT (link_id, key) DO UPDATE SET at = now(), answer = EXCLUDED.answer",
        &[link.id.into(), key.as_str().into(), Jsonb(answer.clone()).into()],
    )
    .or_raise();
    Reply::json(200, answer)
}

/// Each record's remote key and modification time (microseconds since the epoch), when the
/// link has a `remote_time_field` and the record carries both.
fn times_of(link: &LinkRow, records: &[Value]) -> Vec<Option<(String, i64)>> {
    let Some(field) = link.conf.remote_time_field.as_deref() else { return vec![None; records.len()] };
    records
        .iter()
        .map(|r| {
            let key = match r.get(&link.remote_key_field)? {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Number(n) => {
                    crate::logic::canonical::canonical_number(&n.to_string()).unwrap_or_else(|| n.to_string())
                }
                _ => return None,
            };
            let (secs, micros) = r.get(field)?.as_str().and_then(crate::logic::canonical::instant)?;
            Some((key, secs.saturating_mul(1_000_000).saturating_add(micros)))
        })
        .collect()
}

/// The newest modification time applied so far, by remote key.
fn applied_times(link_id: i64, times: &[Option<(String, i64)>]) -> HashMap<String, i64> {
    let keys: Vec<&str> = times.iter().flatten().map(|(k, _)| k.as_str()).collect();
    if keys.is_empty() {
        return HashMap::new();
    }
    plans::select(
        "SELECT r.remote_key, r.in_remote_us FROM syncbridge._records_by_remote_key($1, $2) r \
         WHERE r.in_remote_us IS NOT NULL",
        &[link_id.into(), keys.into()],
        |rows| {
            let mut out = HashMap::new();
            for row in rows {
                if let (Some(k), Some(us)) = (row.get::<String>(1)?, row.get::<i64>(2)?) {
                    out.insert(k, us);
                }
            }
            Ok(out)
        },
    )
}

/// Remembers the modification time of each record applied (not failed), the newest kept.
fn record_times(link_id: i64, times: &[Option<(String, i64)>], results: &[Row]) {
    let (keys, us): (Vec<&str>, Vec<i64>) = times
        .iter()
        .zip(results)
        .filter(|(_, (_, _, status, _))| status != "failed")
        .filter_map(|(t, _)| t.as_ref().map(|(k, us)| (k.as_str(), *us)))
        .unzip();
    if keys.is_empty() {
        return;
    }
    Spi::run_with_args(
        "UPDATE syncbridge._record r SET in_remote_us = greatest(r.in_remote_us, t.us) \
         FROM (SELECT k, max(us) AS us FROM unnest($2::text[], $3::bigint[]) AS t(k, us) GROUP BY k) t \
         WHERE r.link_id = $1 AND r.remote_key = t.k",
        &[link_id.into(), keys.into(), us.into()],
    )
    .or_raise();
}
