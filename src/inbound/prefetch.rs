//! What a set of records needs to be decided, in two queries whatever its size: the id-map
//! state of every record (by remote key, here) and every paired local row (by local key,
//! `TableStatements::rows`, as the table's owner).

use crate::logic::decide::State;
use crate::spi::jsonb::Jsonb;
use crate::spi::plans;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// The id-map state of each of these remote keys that has one, by remote key.
pub fn states(link_id: i64, remote_keys: Vec<&str>) -> HashMap<String, State> {
    plans::select(
        "SELECT r.remote_key, r.local_key, r.created_by, r.base, r.in_fingerprint, r.in_status \
         FROM syncbridge._records_by_remote_key($1, $2) r",
        &[link_id.into(), remote_keys.into()],
        |rows| {
            let mut states = HashMap::with_capacity(rows.len());
            for row in rows {
                let remote_key: String = row.get(1)?.unwrap_or_default();
                let base = row.get::<Jsonb>(4)?.and_then(|j| match j.0 {
                    Value::Object(m) => Some(m),
                    _ => None,
                });
                let state = State {
                    local_key: row.get(2)?,
                    created_by: row.get(3)?,
                    base,
                    in_fingerprint: row.get(5)?,
                    in_status: row.get(6)?,
                    unsent_local: false,
                };
                states.insert(remote_key, state);
            }
            Ok(states)
        },
    )
}

/// The remote key each of these local keys is paired with, for those paired.
pub fn remote_keys_of(link_id: i64, local_keys: Vec<&str>) -> HashMap<String, String> {
    if local_keys.is_empty() {
        return HashMap::new();
    }
    plans::select(
        "SELECT r.local_key, r.remote_key FROM syncbridge._record r \
         WHERE r.link_id = $1 AND r.local_key = ANY ($2::text[]) AND r.remote_key IS NOT NULL",
        &[link_id.into(), local_keys.into()],
        |rows| {
            let mut out = HashMap::with_capacity(rows.len());
            for row in rows {
                if let (Some(local), Some(remote)) = (row.get::<String>(1)?, row.get::<String>(2)?) {
                    out.insert(local, remote);
                }
            }
            Ok(out)
        },
    )
}

/// Which of these local keys have a local change not yet delivered (pending, or still in the
/// outbox): a remote record paired with such a row before any sync agreed on a base (our own
/// create, pulled before its answer came back) must not revert it.
pub fn unsent(link_id: i64, local_keys: Vec<&str>) -> HashSet<String> {
    keys_among(
        "SELECT k.k FROM unnest($2::text[]) AS k(k) \
         WHERE EXISTS (SELECT FROM syncbridge._pending p WHERE p.link_id = $1 AND p.local_key = k.k) \
            OR EXISTS (SELECT FROM syncbridge.outbox o WHERE o.link_id = $1 AND k.k = ANY (o.keys))",
        link_id,
        local_keys,
    )
}

/// Which of these local keys have a delivery to the remote in flight.
pub fn in_flight(link_id: i64, local_keys: Vec<&str>) -> HashSet<String> {
    keys_among(
        "SELECT p.local_key FROM syncbridge._pending p WHERE p.link_id = $1 AND p.local_key = ANY ($2::text[]) AND p.in_flight",
        link_id,
        local_keys,
    )
}

/// The keys `query` (taking the link id and the keys as $1 and $2) returns, out of `keys`.
fn keys_among(query: &str, link_id: i64, keys: Vec<&str>) -> HashSet<String> {
    if keys.is_empty() {
        return HashSet::new();
    }
    plans::select(query, &[link_id.into(), keys.into()], |rows| {
        let mut out = HashSet::new();
        for row in rows {
            if let Some(k) = row.get::<String>(1)? {
                out.insert(k);
            }
        }
        Ok(out)
    })
}
