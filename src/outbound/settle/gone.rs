//! Updates whose remote record is gone (a 404 to the update, or a 2xx with no record on a link
//! whose `empty_update_answer` is `gone`): the remote deleted the record, and the link's
//! delete policy (`deletes`) applies as if a tombstone had arrived — through the inbound
//! apply itself (`inbound::apply_records`): the local row is deleted, soft-deleted or kept,
//! with the inbound event that says so. The delivery settles as `ignored`, its reason naming
//! the answer and what the policy did; nothing is dead-lettered for it. A link that does not
//! receive forgets the pairing instead: the local row stays and its next change creates the
//! record again.

use super::Results;
use crate::catalog::link::LinkRow;
use crate::logic::link_spec::Direction;
use crate::logic::status::Status;
use serde_json::{Map, Value};

/// One delivery whose remote record is gone: its place among the outcomes, and why.
pub struct RemoteDelete {
    pub outcome: usize,
    pub why: String,
}

/// Applies the link's delete policy to the records of `gone` and settles their outcomes.
pub fn apply(link: &LinkRow, results: &mut Results, gone: Vec<RemoteDelete>) {
    if gone.is_empty() {
        return;
    }
    let receives = Direction::parse(&link.direction).is_ok_and(|d| d.receives());
    let applied = if receives {
        let tombstones = gone
            .iter()
            .map(|g| {
                let key = results.outcomes[g.outcome].remote_key.clone().unwrap_or_default();
                let mut t = Map::new();
                t.insert(link.remote_key_field.clone(), Value::String(key));
                t.insert(link.conf.tombstone_field.clone(), Value::Bool(true));
                Value::Object(t)
            })
            .collect();
        Some(crate::inbound::apply_records(&link.name, Value::Array(tombstones)))
    } else {
        None
    };
    for (i, g) in gone.iter().enumerate() {
        let o = &mut results.outcomes[g.outcome];
        match &applied {
            Some(Ok(rows)) => {
                let (_, _, status, reason) = &rows[i];
                let what = reason.clone().unwrap_or_else(|| status.clone());
                if status == Status::Failed.name() {
                    o.status = Status::Failed;
                    o.reason = Some(format!("{}; the remote delete could not be applied: {what}", g.why));
                } else {
                    // The row and its pairing are gone with a delete; a soft delete or an
                    // ignored one keeps both.
                    o.gone = matches!(what.as_str(), "deleted" | "already absent locally");
                    o.reason = Some(format!("{}; applied as a remote delete: {what}", g.why));
                }
            }
            Some(Err(e)) => {
                o.status = Status::Failed;
                o.reason = Some(format!("{}; the remote delete could not be applied: {}", g.why, e.message));
            }
            None => {
                o.gone = true;
                o.reason = Some(format!(
                    "{}; the link does not receive deletes: the local row stays and the next local change creates it again",
                    g.why
                ));
            }
        }
    }
}
