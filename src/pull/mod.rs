//! Inbound pull: the worker asks the remote for records changed since the link's cursor,
//! applies them through the same code as `syncbridge.apply_inbound`, and advances the cursor
//! in the same transaction (a crash in between re-pulls; the guards make that harmless).
//!
//! Settings: `pull_path` (default: the collection), `cursor_param` (query parameter that
//! carries the cursor), `cursor_field` (record field whose newest value becomes the cursor),
//! `pull_query` (fixed query text such as `_page=1&_limit=500`), `list_pointer`,
//! `next_pointer`, `pull_interval` (seconds, for realtime links).

pub mod fetch;

use crate::catalog::link::LinkRow;
use crate::error::{spi_opt, OrRaise, Result};
use crate::inbound::Row;
use crate::logic::delivery;
use crate::logic::inbound_retry::{self, Refetched};
use crate::logic::status::Status;
use crate::outbound::settle;
use crate::spi::subxact;
use fetch::{PullSpec, Pulled};
use pgrx::prelude::*;
use serde_json::Value;
use std::collections::HashSet;

/// The first request of a pull from `cursor` on.
pub fn spec(link: &LinkRow, cursor: Option<&str>, headers: Vec<(String, String)>) -> PullSpec {
    let path = link.conf.pull_path.as_deref().unwrap_or(&link.remote_collection);
    let mut url = format!("{}/{}", link.remote_base_url, path.trim_start_matches('/'));
    // The query: the cursor as one percent-encoded pair, then the fixed text as given.
    let mut query = Vec::new();
    if let (Some(param), Some(cursor)) = (link.conf.cursor_param.as_deref(), cursor) {
        query.push(format!("{}={}", delivery::encode_component(param), delivery::encode_component(cursor)));
    }
    if let Some(extra) = link.conf.pull_query.as_deref() {
        query.push(extra.trim_start_matches(['?', '&']).to_string());
    }
    if !query.is_empty() {
        match url::Url::parse(&url) {
            Ok(mut parsed) => {
                let joined = parsed.query().into_iter().map(str::to_owned).chain(query).collect::<Vec<_>>().join("&");
                parsed.set_query(Some(&joined));
                url = parsed.into();
            }
            // The worker reports an unparseable URL when it sends; keep the text.
            Err(_) => url = format!("{url}{}{}", if url.contains('?') { '&' } else { '?' }, query.join("&")),
        }
    }
    let refetch = retry_due(link.id)
        .into_iter()
        .map(|key| {
            let url = delivery::record_url(&link.remote_base_url, &link.remote_collection, Some(&key));
            (key, url)
        })
        .collect();
    PullSpec {
        first_url: url,
        headers,
        list_pointer: link.conf.list_pointer.clone(),
        next_pointer: link.conf.next_pointer.clone(),
        max_pages: link.conf.max_pages as usize,
        refetch,
        remote_key_field: link.remote_key_field.clone(),
    }
}

/// Failed records fetched again in one pull, at most.
const REFETCH_PER_PULL: i32 = 50;

/// The remote keys of failed records whose next try has come. An error reading them is
/// logged and the pull goes on without them (they are tried at a later pull).
fn retry_due(link_id: i64) -> Vec<String> {
    let read = || {
        Spi::connect(|c| -> std::result::Result<Vec<String>, pgrx::spi::Error> {
            let rows = c.select(
                "SELECT k FROM syncbridge._inbound_retry_due($1, $2) AS k",
                None,
                &[link_id.into(), REFETCH_PER_PULL.into()],
            )?;
            rows.map(|r| r.get::<String>(1).map(Option::unwrap_or_default)).collect()
        })
        .or_raise()
    };
    subxact::run(read).unwrap_or_else(|e| {
        tracing::warn!("reading the failed records to fetch again: {e}");
        Vec::new()
    })
}

/// The link's stored cursor.
pub fn cursor(link_id: i64) -> Result<Option<String>> {
    spi_opt::<String>("SELECT pull_cursor FROM syncbridge._link_state WHERE link_id = $1", &[link_id.into()])
}

/// Applies pulled records and moves the cursor, in the caller's transaction. Returns how many
/// records were applied (any outcome).
pub fn apply(link: &LinkRow, pulled: Pulled) -> Result<usize> {
    let old = cursor(link.id)?;
    let new = match link.conf.cursor_field.as_deref() {
        Some(field) => fetch::advance_cursor(&pulled.records, field, old.as_deref()),
        None => old,
    };
    // Records fetched again join the pages' records (a record a page brought is already
    // there, as new), but never move the cursor.
    let mut records = pulled.records;
    let paged: HashSet<String> =
        records.iter().filter_map(|r| r.get(&link.remote_key_field)).filter_map(delivery::id_text).collect();
    let mut gone = Vec::new();
    let mut unfetched = Vec::new();
    for (key, got) in pulled.refetched {
        match got {
            Refetched::Record(record) if !paged.contains(&key) => records.push(record),
            Refetched::Record(_) => {}
            Refetched::Gone => gone.push(key),
            Refetched::Failed(why) => unfetched.push((key, format!("fetching it again failed: {why}"))),
        }
    }
    let n = records.len();
    let rows = if n > 0 { crate::inbound::apply_pulled(&link.name, Value::Array(records))? } else { Vec::new() };
    remember_failures(link, &rows, gone, unfetched);
    Spi::run_with_args("SELECT syncbridge._link_pulled($1, $2)", &[link.id.into(), new.into()]).or_raise();
    Ok(n)
}

/// Records the pulled records' outcomes in `_inbound_retry`: a record that failed is fetched
/// again later (with backoff, up to the link's `max_attempts`), one that applied or is gone
/// is forgotten. (A cancel or lock timeout never gets here: the apply raised it, the pull
/// failed and its cursor stayed.)
fn remember_failures(link: &LinkRow, rows: &[Row], gone: Vec<String>, unfetched: Vec<(String, String)>) {
    let mut ok = Vec::new();
    let (mut failed, mut errors): (Vec<String>, Vec<String>) = unfetched.into_iter().unzip();
    for (remote_key, _, status, reason) in rows {
        let Some(key) = remote_key.clone() else { continue };
        if status.as_str() == Status::Failed.name() {
            failed.push(key);
            errors.push(reason.clone().unwrap_or_default());
        } else {
            ok.push(key);
        }
    }
    let attempts = Spi::connect(|c| -> std::result::Result<Vec<(String, i32)>, pgrx::spi::Error> {
        let rows = c.select(
            "SELECT remote_key, attempts FROM syncbridge._inbound_pulled($1, $2, $3, $4, $5)",
            None,
            &[link.id.into(), ok.into(), gone.into(), failed.into(), errors.into()],
        )?;
        rows.map(|r| Ok((r.get::<String>(1)?.unwrap_or_default(), r.get::<i32>(2)?.unwrap_or(1)))).collect()
    })
    .or_raise();
    if attempts.is_empty() {
        return;
    }
    let now = std::time::SystemTime::now();
    let mut keys = Vec::with_capacity(attempts.len());
    let mut next = Vec::with_capacity(attempts.len());
    for (key, n) in attempts {
        let n = n.max(1) as u32;
        let after = inbound_retry::next_try(n, link.conf.max_attempts, settle::jitter_for(&key, n));
        if after.is_none() {
            tracing::warn!(
                "remote record {key} failed to apply {n} times; given up (syncbridge.retry_failed('{}') tries again)",
                link.name
            );
        }
        next.push(after.map(|d| settle::rfc3339(now + d)));
        keys.push(key);
    }
    Spi::run_with_args(
        "SELECT syncbridge._inbound_retry_at($1, $2, $3::timestamptz[])",
        &[link.id.into(), keys.into(), next.into()],
    )
    .or_raise();
}
