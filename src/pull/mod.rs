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
use crate::logic::delivery;
use fetch::{PullSpec, Pulled};
use pgrx::prelude::*;
use serde_json::Value;

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
    PullSpec {
        first_url: url,
        headers,
        list_pointer: link.conf.list_pointer.clone(),
        next_pointer: link.conf.next_pointer.clone(),
        max_pages: link.conf.max_pages as usize,
    }
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
    let n = pulled.records.len();
    if n > 0 {
        crate::inbound::apply_records(&link.name, Value::Array(pulled.records))?;
    }
    Spi::run_with_args("SELECT syncbridge._link_pulled($1, $2)", &[link.id.into(), new.into()]).or_raise();
    Ok(n)
}
