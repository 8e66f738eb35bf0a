//! Inbound apply: records from the remote land in the local table — mapped, checked against
//! the loop guards, settled against local edits, written under the link's origin flag so
//! capture does not echo them, and recorded (id map, base snapshot, events, conflicts).
//!
//! `syncbridge.apply_inbound(link, records)` is the entry point for webhook receivers and
//! ETL jobs; the worker's pull calls the same code (`apply_records`).
//!
//! A batch is applied together (`batch`): `prefetch` reads what is known of all its records
//! in two queries, `logic::decide` decides each one, `write` makes the table writes in
//! record order, one statement per run of alike writes, and `journal` records the id map,
//! events and conflicts, one statement each. When that cannot stand for one record after
//! the other (two records touch the same record or row) or its write fails, the batch is
//! applied in halves the same way, down to single records (`one_by_one`), each part through
//! the same code in its own subtransaction (`subxact`). `statements` and
//! `plans` keep the SQL parsed and planned once per session.

mod batch;
mod journal;
mod one_by_one;
mod prefetch;
mod write;

use crate::catalog::link::LinkRow;
use crate::error::{OrRaise, SyncError};
use crate::logic::decide::{Deletes, Rules};
use crate::logic::inbound::{self, Incoming, Reading, UnknownFields};
use crate::logic::link_spec::{Contention, Direction, Guard};
use crate::logic::mapping::FieldMap;
use crate::spi::jsonb::Jsonb;
use crate::spi::subxact;
use crate::table::TableStatements;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use serde_json::Value;

/// One result row: remote key, local key, status, reason.
pub type Row = (Option<String>, Option<String>, String, Option<String>);

/// Applies a JSON array of remote records to the link's table; one row out per record in.
/// A record that cannot be applied fails alone, with its reason; input that is not a JSON
/// array of objects is refused whole.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)]
fn apply_inbound(
    link: &str,
    records: Jsonb,
) -> TableIterator<
    'static,
    (
        name!(remote_key, Option<String>),
        name!(local_key, Option<String>),
        name!(status, String),
        name!(reason, Option<String>),
    ),
> {
    // SAFETY: superuser() looks up the current user's role (a syscache read), on the backend's main thread inside the
    // SQL call's transaction.
    if !unsafe { pg_sys::superuser() } {
        SyncError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied for syncbridge.apply_inbound",
            "Applying inbound records needs a superuser for now.",
        )
        .raise();
    }
    TableIterator::new(apply_records(link, records.0).or_raise())
}

/// Applies records to a link: the one path for `apply_inbound` and the worker's pull.
/// Errors only when the whole call is refused (unknown or paused link, not an array of
/// objects); each record's own failure is in its row.
pub fn apply_records(link: &str, records: Value) -> Result<Vec<Row>, SyncError> {
    apply(Batch::prepare(link, records)?)
}

/// Like [`apply_records`], for records a pull brought: a record whose row has a delivery
/// to the remote in flight is deferred (failed with [`IN_FLIGHT`], so the pull fetches it
/// again later). Its remote version may be that delivery's own write, which the base does
/// not hold until the delivery is settled: taken now, it would look like a remote edit.
pub fn apply_pulled(link: &str, records: Value) -> Result<Vec<Row>, SyncError> {
    let mut batch = Batch::prepare(link, records)?;
    batch.defer_in_flight = true;
    apply(batch)
}

/// Why a pulled record was deferred.
pub const IN_FLIGHT: &str =
    "deferred: a delivery of this record to the remote is in flight; fetched again once it is settled";

fn apply(batch: Batch) -> Result<Vec<Row>, SyncError> {
    let read: Vec<Read> = batch.records.iter().map(|rec| batch.read(rec)).collect();
    let mut rows = Vec::with_capacity(read.len());
    batch.apply_part(&read, &mut rows);
    Ok(rows)
}

/// The place of the first record whose remote key an earlier record of `records` has.
fn first_repeated_key(records: &[Read]) -> Option<usize> {
    let mut seen = std::collections::HashSet::with_capacity(records.len());
    records.iter().position(|r| r.as_ref().is_ok_and(|inc| !seen.insert(inc.remote_key.as_str())))
}

/// A record as read: checked and mapped, or why it cannot be applied.
type Read = Result<Incoming, Unread>;

/// A record that failed to read, with what it may say of its key.
struct Unread {
    key_hint: Option<String>,
    reason: String,
}

/// A link ready to receive, and the records of one call.
pub struct Batch {
    link: LinkRow,
    map: FieldMap,
    guards: Vec<Guard>,
    contention: Contention,
    records: Vec<Value>,
    /// The statements on the link's table, written as they are first needed.
    statements: TableStatements,
    /// The link's `remote_id_column`, when the table has it and it does not travel as a
    /// field: a row a record creates gets the record's remote key there.
    remote_id_column: Option<String>,
    /// Records whose row has a delivery in flight are deferred (pulls).
    defer_in_flight: bool,
}

impl Batch {
    fn prepare(name: &str, records: Value) -> Result<Self, SyncError> {
        let link = LinkRow::load_for_update(name)?;
        if !Direction::parse(&link.direction)?.receives() {
            return Err(SyncError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("link \"{name}\" does not receive records (direction {})", link.direction),
                format!("Set its direction to 'inbound' or 'both': SELECT syncbridge.alter_link('{name}', '{{\"direction\": \"both\"}}');"),
            ));
        }
        if link.paused {
            return Err(SyncError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("link \"{name}\" is paused"),
                format!("Resume it first: SELECT syncbridge.resume_link('{name}');"),
            ));
        }
        let records = match records {
            Value::Array(items) if items.iter().all(Value::is_object) => items,
            other => {
                let got = match &other {
                    Value::Array(_) => "an array with an element that is not an object",
                    Value::Object(_) => "an object",
                    _ => "not an array",
                };
                return Err(SyncError::new(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("records must be a JSON array of objects, got {got}"),
                    "Pass '[{\"id\": ..., ...}, ...]'; nothing was applied.",
                ));
            }
        };
        let map = link.field_map()?;
        let remote_id_column = match link.conf.remote_id_column.as_deref() {
            Some(column) => crate::error::spi_opt::<bool>(
                "SELECT EXISTS (SELECT FROM syncbridge._field_rule WHERE link_id = $1 AND column_name = $2 AND NOT synced)",
                &[link.id.into(), column.into()],
            )?
            .unwrap_or(false)
            .then(|| column.to_owned()),
            None => None,
        };
        Ok(Self {
            remote_id_column,
            defer_in_flight: false,
            guards: Guard::parse_list(&link.loop_guards)?,
            contention: Contention::parse(&link.contention)?,
            statements: TableStatements::new(&link),
            link,
            map,
            records,
        })
    }

    /// Applies `records` in their order, appending one row each to `rows`: all together in
    /// one subtransaction; if they clash or the write fails, nothing of it stays and each half
    /// is applied the same way, the first before the second, down to single records. So a
    /// bad record among a thousand costs about twenty attempts, and the good records go in a
    /// few subtransactions, not one each: past 64 committed subtransactions every visibility
    /// check of the transaction slows down (PostgreSQL's subtransaction cache overflows),
    /// and applying a thousand records one by one took seconds. A remote key that comes again
    /// splits the set before its second record, without an attempt (a change feed may repeat
    /// a record many times). A cancel, a deadlock and the like stop the call
    /// (`subxact::run_unless_transient`).
    fn apply_part(&self, records: &[Read], rows: &mut Vec<Row>) {
        if records.len() < 2 {
            rows.extend(records.iter().map(|one| self.apply_alone(one)));
            return;
        }
        if let Some(at) = first_repeated_key(records) {
            self.apply_part(&records[..at], rows);
            self.apply_part(&records[at..], rows);
            return;
        }
        match subxact::run_unless_transient(|| self.apply_together(records)) {
            Ok(Some(applied)) => rows.extend(applied),
            _ => {
                let (first, second) = records.split_at(records.len() / 2);
                self.apply_part(first, rows);
                self.apply_part(second, rows);
            }
        }
    }

    fn read(&self, rec: &Value) -> Read {
        inbound::read(rec, &self.map, self.reading()).map_err(|reason| Unread {
            key_hint: rec.get(&self.link.remote_key_field).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
            reason,
        })
    }

    fn reading(&self) -> Reading<'_> {
        let conf = &self.link.conf;
        Reading {
            remote_key_field: &self.link.remote_key_field,
            local_id_field: conf.local_id_field.as_deref(),
            unknown: match conf.unknown_fields.as_str() {
                "fail" => UnknownFields::Fail,
                _ => UnknownFields::Ignore,
            },
            tombstone_field: &conf.tombstone_field,
            time_field: conf.remote_time_field.as_deref(),
        }
    }

    /// How this link decides about incoming records (`logic::decide`).
    fn rules(&self) -> Rules<'_> {
        let conf = &self.link.conf;
        Rules {
            map: &self.map,
            key_column: &self.link.key_column,
            remote_key_field: &self.link.remote_key_field,
            guards: &self.guards,
            contention: self.contention,
            local_time_column: conf.local_time_column.as_deref(),
            deletes: Deletes::from_settings(Some(&conf.deletes), conf.soft_delete_column.as_deref()),
            writes_back: conf.local_id_field.is_some(),
        }
    }

    /// A tombstone on a link that soft-deletes without naming the column.
    fn no_soft_delete_column(&self) -> SyncError {
        SyncError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("link \"{}\" soft-deletes but has no soft_delete_column", self.link.name),
            "Name the column: SELECT syncbridge.alter_link(<link>, '{\"soft_delete_column\": \"deleted\"}');",
        )
    }
}
