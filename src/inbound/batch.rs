//! Applying a set of records together: the state and local rows of all of them in two
//! queries, every decision in Rust (`logic::decide`), the writes into the table in record
//! order, one statement per run of records with the same kind of write and columns, the id
//! map, events and conflicts one statement each.
//!
//! Records that touch the same remote record or the same local row cannot be applied
//! together as if one came after the other; such a set is refused (`None`) and applied one
//! record at a time. So is a set whose write fails: the caller runs it in a subtransaction,
//! and on any error applies its records one by one, each with its own outcome.

use super::journal::Journal;
use super::prefetch;
use super::write::TableWrites;
use super::{Batch, Read, Row};
use crate::logic::decide::{decide, key_text, settle, to_remote_names, Decided, Decision, State};
use crate::logic::guards::Stop;
use crate::logic::inbound::Incoming;
use crate::logic::status::Status;
use crate::outbox::enqueue::{enqueue, enqueue_with_fields, Op};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// The start of the reason of a record that duplicates another remote record.
const DUPLICATE: &str = "duplicate";

/// One record on its way: where it is in the set, what is known of it, what to do.
struct Plan<'a> {
    slot: usize,
    inc: &'a Incoming,
    /// The paired local key, when its row exists.
    local_key: Option<String>,
    local_row: Option<&'a Map<String, Value>>,
    decided: Decided,
    /// The record carries the local id of a row that is paired with this other remote
    /// record: a duplicate, reported and not applied.
    duplicate_of: Option<String>,
}

impl Batch {
    /// Applies `records` together and returns one row per record, in their order; `None`
    /// when two of them touch the same record or row (nothing was written then).
    pub(super) fn apply_together(&self, records: &[Read]) -> Option<Vec<Row>> {
        let incoming: Vec<(usize, &Incoming)> =
            records.iter().enumerate().filter_map(|(slot, r)| Some((slot, r.as_ref().ok()?))).collect();
        let mut remote_keys = HashSet::with_capacity(incoming.len());
        if !incoming.iter().all(|(_, inc)| remote_keys.insert(inc.remote_key.as_str())) {
            return None;
        }
        let states = prefetch::states(self.link.id, remote_keys.into_iter().collect());
        // Records new to the id map that name a local id: is that row paired with another
        // remote record already?
        let unknown_ids: Vec<&str> = incoming
            .iter()
            .filter(|(_, inc)| !states.contains_key(&inc.remote_key))
            .filter_map(|(_, inc)| inc.local_id.as_deref())
            .collect();
        let taken = prefetch::remote_keys_of(self.link.id, unknown_ids);
        let paired: Vec<Option<String>> = incoming
            .iter()
            .map(|(_, inc)| {
                states.get(&inc.remote_key).and_then(|s| s.local_key.clone()).or_else(|| inc.local_id.clone())
            })
            .collect();
        let asked: HashSet<&str> = paired.iter().flatten().map(String::as_str).collect();
        let in_flight = if self.defer_in_flight {
            prefetch::in_flight(self.link.id, asked.iter().copied().collect())
        } else {
            HashSet::new()
        };
        let rows = self.statements.rows(asked.into_iter().collect());

        // Rows paired by their local id before any sync agreed on a base, with a local change
        // not yet delivered.
        let first_contact: Vec<&str> = incoming
            .iter()
            .zip(&paired)
            .filter(|((_, inc), key)| {
                !states.contains_key(&inc.remote_key) && key.as_deref().is_some_and(|k| rows.contains_key(k))
            })
            .filter_map(|(_, key)| key.as_deref())
            .collect();
        let unsent = super::prefetch::unsent(self.link.id, first_contact);

        let rules = self.rules();
        let no_state = State::default();
        let unsent_state = State { unsent_local: true, ..State::default() };
        let plans: Vec<Plan<'_>> = incoming
            .iter()
            .zip(paired)
            .map(|(&(slot, inc), paired)| {
                let duplicate_of = match (states.contains_key(&inc.remote_key), inc.local_id.as_deref()) {
                    (false, Some(id)) => taken.get(id).filter(|r| **r != inc.remote_key).cloned(),
                    _ => None,
                };
                if duplicate_of.is_some() {
                    let decided = Decided {
                        fingerprint: String::new(),
                        decision: Decision::Skip { status: Status::Failed, reason: DUPLICATE },
                    };
                    return Plan { slot, inc, local_key: paired, local_row: None, decided, duplicate_of };
                }
                if paired.as_deref().is_some_and(|k| in_flight.contains(k)) {
                    let decided = Decided {
                        fingerprint: String::new(),
                        decision: Decision::Skip { status: Status::Failed, reason: super::IN_FLIGHT },
                    };
                    return Plan { slot, inc, local_key: paired, local_row: None, decided, duplicate_of: None };
                }
                let local_row = paired.as_deref().and_then(|k| rows.get(k));
                let state = match states.get(&inc.remote_key) {
                    Some(state) => state,
                    None if paired.as_deref().is_some_and(|k| unsent.contains(k)) => &unsent_state,
                    None => &no_state,
                };
                let decided = decide(&rules, inc, state, local_row);
                Plan { slot, inc, local_key: local_row.and(paired), local_row, decided, duplicate_of }
            })
            .collect();
        if self.clash(&plans) {
            return None;
        }

        let mut writes = TableWrites::default();
        for p in &plans {
            let key = || p.local_key.clone().expect("a decision to change a row has its key");
            match &p.decided.decision {
                Decision::Delete => writes.delete(key()),
                Decision::SoftDelete { column } => {
                    let column = column.as_deref().unwrap_or_else(|| self.no_soft_delete_column().raise());
                    writes.soft_delete(key(), column);
                }
                Decision::Write(w) if w.keeps_the_row() => {}
                Decision::Write(w) if w.update => writes.update(p.slot, key(), self.with_remote_id(&w.values, p)),
                Decision::Write(w) => writes.insert(p.slot, self.with_remote_id(&w.values, p)),
                Decision::Skip { .. } | Decision::Echo => {}
            }
        }
        let mut stored = writes.run(&self.link, &self.statements);

        let mut journal = Journal::default();
        let mut plans = plans.into_iter();
        let out = records
            .iter()
            .enumerate()
            .map(|(slot, record)| match record {
                Err(unread) => {
                    journal.event(None, unread.key_hint.as_deref(), Status::Failed, Some(&unread.reason), None);
                    (unread.key_hint.clone(), None, Status::Failed.name().into(), Some(unread.reason.clone()))
                }
                Ok(_) => {
                    let plan = plans.next().expect("one plan per record read");
                    self.conclude(plan, stored.remove(&slot), &mut journal)
                }
            })
            .collect();
        journal.write(self.link.id);
        Some(out)
    }

    /// The values of a write, plus the record's remote key in the link's remote-id column
    /// when the row is new or its column does not hold that key yet (in the same statement,
    /// under the same origin flag: nothing travels back for it).
    fn with_remote_id(&self, values: &Map<String, Value>, p: &Plan<'_>) -> Map<String, Value> {
        let mut values = values.clone();
        if let Some(column) = &self.remote_id_column {
            let held = p.local_row.and_then(|row| row.get(column)).filter(|v| !v.is_null()).map(key_text);
            if !values.contains_key(column) && held.as_deref() != Some(p.inc.remote_key.as_str()) {
                values.insert(column.clone(), Value::String(p.inc.remote_key.clone()));
            }
        }
        values
    }

    /// Two records that would touch the same local row: the row one of them reads, or the
    /// key one of them writes (an explicit mapping of the key column).
    fn clash(&self, plans: &[Plan<'_>]) -> bool {
        let key_column = self.link.key_column.as_str();
        let mut owner: HashMap<String, usize> = HashMap::with_capacity(plans.len());
        for (i, p) in plans.iter().enumerate() {
            let as_key = |v: &Value| self.map.key.coerce.key_text(v);
            let read = p.local_row.map(|row| as_key(row.get(key_column).unwrap_or(&Value::Null)));
            let written = match &p.decided.decision {
                Decision::Write(w) => w.values.get(key_column).map(as_key),
                _ => None,
            };
            for key in read.into_iter().chain(written) {
                if *owner.entry(key).or_insert(i) != i {
                    return true;
                }
            }
        }
        false
    }

    /// After the writes: one record's id map, conflicts, event, outbox entries and result.
    fn conclude(&self, plan: Plan<'_>, stored: Option<Map<String, Value>>, journal: &mut Journal) -> Row {
        let Plan { inc, local_key, local_row, decided, duplicate_of, .. } = plan;
        if let (Some(paired), Some(key)) = (duplicate_of, local_key.as_deref()) {
            let reason = format!(
                "{DUPLICATE}: remote record {} carries local id {key}, which is paired with remote record {paired}; \
                 not applied (see syncbridge.duplicates)",
                inc.remote_key
            );
            journal.duplicate(key, &paired);
            journal.duplicate(key, &inc.remote_key);
            journal.event(Some(key), Some(&inc.remote_key), Status::Failed, Some(&reason), None);
            return (Some(inc.remote_key.clone()), Some(key.to_owned()), Status::Failed.name().into(), Some(reason));
        }
        let fp = decided.fingerprint.as_str();
        let remote_key = inc.remote_key.as_str();
        let (local_key, status, reason) = match decided.decision {
            Decision::Skip { status, reason } => {
                journal.event(local_key.as_deref(), Some(remote_key), status, Some(reason), Some(fp));
                (local_key, status, Some(reason.to_owned()))
            }
            Decision::Echo => {
                let reason = Stop::NoChange.reason();
                // Both sides hold the local row now: it is the base (an unsent local edit the
                // remote made too has nothing left to send).
                let base = local_row.map(|row| to_remote_names(&self.rules(), row));
                journal.remember(
                    local_key.as_deref().expect("an echo has a local row"),
                    remote_key,
                    base.as_ref(),
                    fp,
                    Status::Ignored,
                );
                journal.event(local_key.as_deref(), Some(remote_key), Status::Ignored, Some(reason), Some(fp));
                (local_key, Status::Ignored, Some(reason.to_owned()))
            }
            Decision::Delete => {
                let key = local_key.expect("a delete has a local row");
                journal.forget(&key);
                journal.event(Some(&key), Some(remote_key), Status::Delivered, Some("deleted"), Some(fp));
                (Some(key), Status::Delivered, Some("deleted".to_owned()))
            }
            Decision::SoftDelete { .. } => {
                let key = local_key.expect("a soft delete has a local row");
                journal.remember(&key, remote_key, None, fp, Status::Delivered);
                journal.event(Some(&key), Some(remote_key), Status::Delivered, Some("soft-deleted"), Some(fp));
                (Some(key), Status::Delivered, Some("soft-deleted".to_owned()))
            }
            Decision::Write(w) => {
                let stored = if w.keeps_the_row() { local_row.cloned() } else { stored };
                let stored = stored.unwrap_or_else(|| super::write::not_written(&self.link).raise());
                let settled = settle(&self.rules(), inc, &stored, &w);
                let key = settled.local_key;
                journal.conflicts(&key, remote_key, &w.conflicts);
                let keys = [key.as_str()];
                if !settled.reflect.is_empty() {
                    enqueue_with_fields(
                        self.link.id,
                        Op::Reflect,
                        &keys,
                        Some(&self.link.name),
                        Some(&settled.reflect),
                    );
                }
                if settled.write_back {
                    enqueue(self.link.id, Op::Writeback, &keys, Some(&self.link.name));
                }
                journal.remember(&key, remote_key, Some(&settled.base), fp, settled.status);
                journal.event(Some(&key), Some(remote_key), settled.status, settled.reason.as_deref(), Some(fp));
                (Some(key), settled.status, settled.reason)
            }
        };
        (Some(inc.remote_key.clone()), local_key, status.name().to_owned(), reason)
    }
}
