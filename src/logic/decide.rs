//! What happens to one incoming record, decided without the database.
//!
//! * [`decide`], before the write: from the record, its id-map state and the local row —
//!   tombstones by the link's `deletes` policy, the `fingerprint` and `echo` guards, then
//!   contention against the base snapshot — which columns to write, or why nothing is.
//! * [`settle`], after the write: from the row as stored — its key, the new base snapshot,
//!   the status and reason, and what to send back (`reflect`, writeback).
//!
//! Inbound apply gathers the facts, for one record or a whole batch at once, and does what
//! these functions say: both ways of applying decide alike.

use super::canonical;
use super::contention::{self, Conflict, Context, FieldState};
use super::fingerprint;
use super::guards;
use super::inbound::Incoming;
use super::link_spec::{Contention, Guard, Side};
use super::mapping::{Coerce, FieldMap};
use super::status::Status;
use serde_json::{Map, Value};

/// Reason of a record blocked by the `fingerprint` guard.
pub const SAME_FINGERPRINT: &str = "same fingerprint as the last record received";

/// How a link treats incoming records.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub map: &'a FieldMap,
    pub key_column: &'a str,
    pub remote_key_field: &'a str,
    pub guards: &'a [Guard],
    pub contention: Contention,
    /// The local column with the row's modification time (`newer_wins`).
    pub local_time_column: Option<&'a str>,
    pub deletes: Deletes<'a>,
    /// The link names a remote field for the local id (`local_id_field`): a row created by a
    /// remote record sends its new id back.
    pub writes_back: bool,
}

/// What a tombstone does (the link's `deletes` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletes<'a> {
    Delete,
    /// Marks the row in this column (`soft_delete_column`; `None` when the link names none).
    SoftDelete(Option<&'a str>),
    Ignore,
}

impl<'a> Deletes<'a> {
    /// `deletes` = `delete` (the default, and any other value), `soft_delete` or `ignore`.
    pub fn from_settings(policy: Option<&str>, soft_delete_column: Option<&'a str>) -> Self {
        match policy {
            Some("ignore") => Deletes::Ignore,
            Some("soft_delete") => Deletes::SoftDelete(soft_delete_column),
            _ => Deletes::Delete,
        }
    }
}

/// The record's row in the id map (`syncbridge._record`), when there is one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub local_key: Option<String>,
    pub created_by: Option<String>,
    /// The base snapshot of the last synced version (remote field names).
    pub base: Option<Map<String, Value>>,
    pub in_fingerprint: Option<String>,
    pub in_status: Option<String>,
    /// No base yet, and the local row has a change not yet delivered: the remote record is
    /// taken as unchanged (our own create, read back before its answer), so the local
    /// edit stands and goes out.
    pub unsent_local: bool,
}

/// What to do with a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing is written and nothing remembered; only an event (`blocked` by fingerprint, a
    /// tombstone that is `ignored`).
    Skip {
        status: Status,
        reason: &'static str,
    },
    /// `echo`: the record equals the local row. Remembered as `ignored`, not written.
    Echo,
    /// A tombstone: delete the local row and forget its state.
    Delete,
    /// A tombstone: mark the local row deleted in this column.
    SoftDelete {
        column: Option<String>,
    },
    Write(Write),
}

/// A write into the local table.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The values to write, by local column.
    pub values: Map<String, Value>,
    /// The local row exists: update it (or, with no values, keep it as it is); else insert.
    pub update: bool,
    /// Local edits that lost to this record (contention).
    pub conflicts: Vec<Conflict>,
    /// Fields (remote names) the record carries whose different local value won: the remote
    /// still holds its own value there.
    pub kept: Vec<String>,
    /// The base of every synced field the write leaves alone (remote names): the remote's
    /// value where the record carries the field (read as the column's type reads it), else
    /// the base before, else the row as it was read. Not the row as stored: a local edit
    /// committed between the read and the write would look agreed, and never be sent.
    pub held: Map<String, Value>,
}

impl Write {
    /// An update with nothing to write: the local row stays as it is.
    pub fn keeps_the_row(&self) -> bool {
        self.update && self.values.is_empty()
    }
}

/// The decision and the record's fingerprint (over its synced, non-volatile fields).
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub fingerprint: String,
    pub decision: Decision,
}

/// Decides what to do with `inc`, given its id-map state and the local row it is paired
/// with (local column names; `None` when it has none, or the row is gone).
pub fn decide(rules: &Rules<'_>, inc: &Incoming, state: &State, local_row: Option<&Map<String, Value>>) -> Decided {
    let volatile: Vec<&str> = rules.map.fields.iter().filter(|f| f.volatile).map(|f| f.remote.as_str()).collect();
    let fingerprint = fingerprint::of_fields(inc.fields.iter().map(|(k, v)| (k.as_str(), v)), &volatile);
    let decided = |decision| Decided { fingerprint: fingerprint.clone(), decision };
    if inc.deleted {
        return decided(match (local_row, rules.deletes) {
            (None, _) => Decision::Skip { status: Status::Ignored, reason: "already absent locally" },
            (Some(_), Deletes::Ignore) => {
                Decision::Skip { status: Status::Ignored, reason: "deletes are ignored on this link" }
            }
            (Some(_), Deletes::SoftDelete(column)) => Decision::SoftDelete { column: column.map(str::to_owned) },
            (Some(_), Deletes::Delete) => Decision::Delete,
        });
    }
    let last_status = state.in_status.as_deref().and_then(Status::parse);
    if rules.guards.contains(&Guard::Fingerprint)
        && state.in_fingerprint.as_deref() == Some(fingerprint.as_str())
        && matches!(last_status, Some(Status::Delivered | Status::Conflict))
        && local_row.is_some()
    {
        return decided(Decision::Skip { status: Status::Blocked, reason: SAME_FINGERPRINT });
    }

    if let Some(row) = local_row {
        // The local row over the fields the record carries, fingerprinted the same way.
        let carried = inc.fields.keys().map(|k| (k.as_str(), local_value(rules, row, k)));
        let local_fp = fingerprint::of_fields(carried, &volatile);
        if guards::inbound_echo(rules.guards, &fingerprint, Some(&local_fp)).is_err() {
            return decided(Decision::Echo);
        }
    }

    let created_by = state.created_by.as_deref().map(|s| if s == "local" { Side::Local } else { Side::Remote });
    let resolution = local_row.map(|row| {
        let base = state.base.as_ref();
        let fields: Vec<FieldState<'_>> = rules
            .map
            .fields
            .iter()
            .filter(|f| inc.fields.contains_key(&f.remote))
            .map(|f| FieldState {
                name: &f.remote,
                base: match base {
                    Some(b) => b.get(&f.remote),
                    None if state.unsent_local => inc.fields.get(&f.remote),
                    None => None,
                },
                local: local_value(rules, row, &f.remote),
                remote: inc.fields.get(&f.remote),
                owner: f.owner,
            })
            .collect();
        let local_time = rules.local_time_column.and_then(|col| row.get(col)?.as_str().and_then(canonical::instant));
        let remote_vs_local_time = inc.modified.zip(local_time).map(|(r, l)| r.cmp(&l));
        contention::resolve(&fields, Context { policy: rules.contention, remote_vs_local_time, created_by })
    });
    let write: Vec<&str> = match &resolution {
        Some(r) => r.write.iter().map(String::as_str).collect(),
        None => inc.fields.keys().map(String::as_str).collect(),
    };
    let values: Map<String, Value> = write
        .iter()
        .filter_map(|remote| rules.map.by_remote(remote).map(|f| (f.column.clone(), inc.fields[*remote].clone())))
        .collect();
    let held: Map<String, Value> = rules
        .map
        .fields
        .iter()
        .filter(|f| !write.contains(&f.remote.as_str()))
        .filter_map(|f| {
            let value = match inc.fields.get(&f.remote) {
                Some(remote) => Some(f.coerce.read(remote)),
                None => state
                    .base
                    .as_ref()
                    .and_then(|b| b.get(&f.remote).cloned())
                    .or_else(|| local_row.map(|row| local_value(rules, row, &f.remote).clone())),
            };
            value.map(|v| (f.remote.clone(), v))
        })
        .collect();
    let (conflicts, kept) = resolution.map(|r| (r.conflicts, r.send_back)).unwrap_or_default();
    decided(Decision::Write(Write { values, update: local_row.is_some(), conflicts, kept, held }))
}

/// The outcome of a write, from the row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    /// The stored row's key, as capture writes keys.
    pub local_key: String,
    /// The new base snapshot: the stored row's synced fields under their remote names.
    pub base: Map<String, Value>,
    /// `delivered`, or `conflict` when a local edit lost.
    pub status: Status,
    pub reason: Option<String>,
    /// Fields the local write added or changed, to send back once (`reflect` guard).
    pub reflect: Vec<String>,
    /// The row was created by this record and its id goes back to the remote.
    pub write_back: bool,
}

/// Settles a record after its write: `stored` is the row as the table keeps it (after
/// defaults and the table's own triggers), `w` the write decided for it.
pub fn settle(rules: &Rules<'_>, inc: &Incoming, stored: &Map<String, Value>, w: &Write) -> Settled {
    let (created, conflicts) = (!w.update, &w.conflicts);
    let local_key = rules.map.key.coerce.key_text(stored.get(rules.key_column).unwrap_or(&Value::Null));
    let (status, reason) = if conflicts.is_empty() {
        (Status::Delivered, None)
    } else {
        let fields: Vec<String> =
            conflicts.iter().map(|c| format!("{} to {} by {}", c.field, c.winner.name(), c.rule.name())).collect();
        (Status::Conflict, Some(format!("contended: {}", fields.join(", "))))
    };
    // The base is what both sides hold: the stored values of the fields written, and for the
    // others what the record says the remote holds (`Write::held`). Where the local value won,
    // the remote still has its own, so the next outbound update sends the local value (with
    // the local value as base, a later remote edit of another field made the local winner
    // look unchanged and the remote's value came back).
    let stored_fields = to_remote_names(rules, stored);
    let mut base = stored_fields.clone();
    for (name, value) in &w.held {
        if let Some(slot) = base.get_mut(name) {
            *slot = value.clone();
        }
    }
    let reflect = if rules.guards.contains(&Guard::Reflect) {
        stored_fields
            .iter()
            .filter(|(name, value)| match inc.fields.get(*name) {
                Some(sent) => canonical::to_canonical(sent) != canonical::to_canonical(value),
                None => created && !value.is_null(),
            })
            .map(|(name, _)| name.clone())
            .collect()
    } else {
        Vec::new()
    };
    Settled { local_key, base, status, reason, reflect, write_back: created && rules.writes_back }
}

/// A local row's synced fields under their remote names.
/// The local key column is left out when its remote name is the remote key field, unless a
/// rule maps it there: a local id is not the remote's id.
pub fn to_remote_names(rules: &Rules<'_>, row: &Map<String, Value>) -> Map<String, Value> {
    rules
        .map
        .fields
        .iter()
        .filter(|f| f.remote != rules.remote_key_field || f.explicit_remote)
        .map(|f| (f.remote.clone(), row.get(&f.column).cloned().unwrap_or(Value::Null)))
        .collect()
}

/// A local row's value of a remote field, as [`to_remote_names`] would give it (`null` for a
/// field it leaves out).
fn local_value<'a>(rules: &Rules<'_>, row: &'a Map<String, Value>, remote: &str) -> &'a Value {
    const NULL: &Value = &Value::Null;
    match rules.map.by_remote(remote) {
        Some(f) if f.remote != rules.remote_key_field || f.explicit_remote => row.get(&f.column).unwrap_or(NULL),
        _ => NULL,
    }
}

/// A key value from a stored row as text, the way capture writes keys (for a column whose
/// type needs no conversion; the key column's own: [`Coerce::key_text`]).
pub fn key_text(v: &Value) -> String {
    Coerce::AsIs.key_text(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::contention::Rule;
    use crate::logic::mapping::{Column, FieldRule};
    use serde_json::json;

    fn map(rules: &[FieldRule]) -> FieldMap {
        let cols = ["id", "name", "email", "tier"]
            .iter()
            .enumerate()
            .map(|(i, n)| Column {
                name: n.to_string(),
                attnum: i as i16 + 1,
                not_null: false,
                coerce: Default::default(),
            })
            .collect::<Vec<_>>();
        FieldMap::build(&cols, rules, "id").unwrap()
    }

    const GUARDS: [Guard; 3] = [Guard::Echo, Guard::Fingerprint, Guard::Context];

    fn rules<'a>(map: &'a FieldMap, guards: &'a [Guard]) -> Rules<'a> {
        Rules {
            map,
            key_column: "id",
            remote_key_field: "id",
            guards,
            contention: Contention::LastWriteWins,
            local_time_column: None,
            deletes: Deletes::Delete,
            writes_back: false,
        }
    }

    fn incoming(fields: Value) -> Incoming {
        Incoming {
            remote_key: "c-1".into(),
            fields: fields.as_object().unwrap().clone(),
            local_id: None,
            deleted: false,
            modified: None,
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_new_record_inserts_every_field_it_carries() {
        let m = map(&[]);
        let d = decide(&rules(&m, &GUARDS), &incoming(json!({"name": "Ada", "email": null})), &State::default(), None);
        let Decision::Write(w) = d.decision else { panic!("{d:?}") };
        assert!(!w.update && w.conflicts.is_empty());
        assert_eq!(Value::Object(w.values), json!({"name": "Ada", "email": null}));
        assert_eq!(d.fingerprint, fingerprint::of_record(&json!({"name": "Ada", "email": null}), &[] as &[&str]));
    }

    #[test]
    fn the_same_record_again_is_blocked_unless_the_last_attempt_did_not_land() {
        let m = map(&[]);
        let inc = incoming(json!({"name": "Ada"}));
        let fp = fingerprint::of_record(&json!({"name": "Ada"}), &[] as &[&str]);
        let row = obj(json!({"id": 1, "name": "Ada (local)"}));
        let state = |status: &str| State {
            local_key: Some("1".into()),
            in_fingerprint: Some(fp.clone()),
            in_status: Some(status.into()),
            ..Default::default()
        };
        let d = decide(&rules(&m, &GUARDS), &inc, &state("delivered"), Some(&row));
        assert_eq!(d.decision, Decision::Skip { status: Status::Blocked, reason: SAME_FINGERPRINT });
        let d = decide(&rules(&m, &GUARDS), &inc, &state("ignored"), Some(&row));
        assert!(matches!(d.decision, Decision::Write(_)), "an ignored record is tried again");
        let d = decide(&rules(&m, &GUARDS), &inc, &state("delivered"), None);
        assert!(matches!(d.decision, Decision::Write(_)), "a record whose row is gone is written again");
        let d = decide(&rules(&m, &[Guard::Echo]), &inc, &state("delivered"), Some(&row));
        assert!(matches!(d.decision, Decision::Write(_)), "without the guard it is written");
    }

    #[test]
    fn a_record_equal_to_the_local_row_is_an_echo() {
        let m = map(&[]);
        let row = obj(json!({"id": 1, "name": "Ada", "email": null, "tier": "gold"}));
        let d = decide(
            &rules(&m, &GUARDS),
            &incoming(json!({"name": "Ada", "email": null})),
            &State::default(),
            Some(&row),
        );
        assert_eq!(d.decision, Decision::Echo);
        let d =
            decide(&rules(&m, &[Guard::Fingerprint]), &incoming(json!({"name": "Ada"})), &State::default(), Some(&row));
        let Decision::Write(ref w) = d.decision else { panic!("{:?}", d.decision) };
        assert!(w.update && w.values.is_empty() && w.conflicts.is_empty() && w.kept.is_empty());
        // Nothing written: the base of every field is what the record says, or the row as read.
        assert_eq!(Value::Object(w.held.clone()), json!({"id": null, "name": "Ada", "email": null, "tier": "gold"}));
        assert!(matches!(d.decision, Decision::Write(ref w) if w.keeps_the_row()));
    }

    #[test]
    fn contention_writes_the_winning_fields_and_records_the_losing_edits() {
        let m = map(&[]);
        let state = State { base: Some(obj(json!({"name": "Ada", "email": "a@x"}))), ..Default::default() };
        let row = obj(json!({"id": 1, "name": "Ada (local)", "email": "a@x"}));
        let inc = incoming(json!({"name": "Ada (remote)", "email": "a@x"}));
        let d = decide(&rules(&m, &GUARDS), &inc, &state, Some(&row));
        let Decision::Write(w) = d.decision else { panic!() };
        assert_eq!(Value::Object(w.values.clone()), json!({"name": "Ada (remote)"}));
        assert_eq!(w.conflicts.len(), 1);
        assert_eq!((w.conflicts[0].field.as_str(), w.conflicts[0].rule), ("name", Rule::LastWriteWins));
        let s = settle(&rules(&m, &GUARDS), &inc, &obj(json!({"id": 1, "name": "Ada (remote)"})), &w);
        assert_eq!(
            (s.status, s.reason.as_deref()),
            (Status::Conflict, Some("contended: name to remote by last_write_wins"))
        );
    }

    #[test]
    fn tombstones_follow_the_deletes_policy() {
        let m = map(&[]);
        let mut inc = incoming(json!({}));
        inc.deleted = true;
        let row = obj(json!({"id": 1}));
        let with = |deletes| Rules { deletes, ..rules(&m, &GUARDS) };
        let d = |deletes, row| decide(&with(deletes), &inc, &State::default(), row).decision;
        assert_eq!(
            d(Deletes::Delete, None),
            Decision::Skip { status: Status::Ignored, reason: "already absent locally" }
        );
        assert_eq!(d(Deletes::Delete, Some(&row)), Decision::Delete);
        assert_eq!(
            d(Deletes::SoftDelete(Some("gone")), Some(&row)),
            Decision::SoftDelete { column: Some("gone".into()) }
        );
        assert_eq!(
            d(Deletes::Ignore, Some(&row)),
            Decision::Skip { status: Status::Ignored, reason: "deletes are ignored on this link" }
        );
        assert_eq!(Deletes::from_settings(None, None), Deletes::Delete);
        assert_eq!(Deletes::from_settings(Some("soft_delete"), Some("x")), Deletes::SoftDelete(Some("x")));
        assert_eq!(Deletes::from_settings(Some("ignore"), None), Deletes::Ignore);
    }

    #[test]
    fn settling_a_created_row_reflects_what_the_table_added_and_writes_the_id_back() {
        let m = map(&[]);
        let guards = [Guard::Reflect];
        let r = Rules { writes_back: true, ..rules(&m, &guards) };
        let inc = incoming(json!({"name": "Ada", "email": "ADA@X"}));
        let stored = obj(json!({"id": 7, "name": "Ada", "email": "ada@x", "tier": "basic"}));
        let created = Write { values: Map::new(), update: false, conflicts: vec![], kept: vec![], held: Map::new() };
        let s = settle(&r, &inc, &stored, &created);
        assert_eq!(s.local_key, "7");
        assert_eq!(s.reflect, vec!["email", "tier"]);
        assert!(s.write_back);
        assert_eq!(Value::Object(s.base), json!({"name": "Ada", "email": "ada@x", "tier": "basic"}), "no local id");
        let updated = settle(&r, &inc, &stored, &Write { update: true, ..created });
        assert_eq!(updated.reflect, vec!["email"], "fields the record did not carry are not reflected on update");
        assert!(!updated.write_back);
    }

    /// Issue 13 point 3: l set note (not yet on the remote), r set qty; merge keeps the local
    /// note and takes qty. The base must hold the remote's note, which the remote still has,
    /// not the local one: else a later remote edit of another field makes the local note look
    /// unchanged and the remote's note comes back.
    #[test]
    fn a_field_the_local_side_kept_stays_in_the_base_as_the_remote_holds_it() {
        let m = map(&[]);
        let r = Rules { contention: Contention::Merge, ..rules(&m, &GUARDS) };
        let state =
            State { base: Some(obj(json!({"name": "Ada", "email": "a@x", "tier": "1"}))), ..Default::default() };
        let row = obj(json!({"id": 1, "name": "Ada", "email": "L@x", "tier": "1"}));
        let inc = incoming(json!({"name": "Ada", "email": "a@x", "tier": "2"}));
        let Decision::Write(w) = decide(&r, &inc, &state, Some(&row)).decision else { panic!() };
        assert_eq!(Value::Object(w.values.clone()), json!({"tier": "2"}));
        assert_eq!(w.kept, vec!["email"]);
        let stored = obj(json!({"id": 1, "name": "Ada", "email": "L@x", "tier": "2"}));
        let s = settle(&r, &inc, &stored, &w);
        assert_eq!(Value::Object(s.base.clone()), json!({"name": "Ada", "email": "a@x", "tier": "2"}));
        // The second pull: the remote changed only name. The local email is still a local edit.
        let state = State { base: Some(s.base), ..Default::default() };
        let inc = incoming(json!({"name": "Ada X", "email": "a@x", "tier": "2"}));
        let Decision::Write(w) = decide(&r, &inc, &state, Some(&stored)).decision else { panic!() };
        assert_eq!(Value::Object(w.values), json!({"name": "Ada X"}), "the local email is not reverted");
        assert_eq!(w.kept, vec!["email"]);
    }

    /// Issue 13 point 2: our create is slow to answer; the row is edited meanwhile; a pull
    /// brings the remote copy of the create (no base yet). The local edit stands.
    #[test]
    fn a_pulled_copy_of_our_own_create_does_not_revert_an_unsent_local_edit() {
        let m = map(&[]);
        let r = rules(&m, &GUARDS);
        let row = obj(json!({"id": 1, "name": "B", "email": "a@x", "tier": null}));
        let inc = incoming(json!({"name": "A", "email": "a@x"}));
        let Decision::Write(w) = decide(&r, &inc, &State::default(), Some(&row)).decision else { panic!() };
        assert_eq!(Value::Object(w.values), json!({"name": "A"}), "with no change pending, the remote is taken");
        let state = State { unsent_local: true, ..Default::default() };
        let Decision::Write(w) = decide(&r, &inc, &state, Some(&row)).decision else { panic!() };
        assert!(w.values.is_empty(), "{:?}", w.values);
        assert_eq!(w.kept, vec!["name"]);
        assert!(w.conflicts.is_empty());
        let s = settle(&r, &inc, &row, &w);
        assert_eq!(s.base.get("name"), Some(&json!("A")), "the base is what the remote holds");
    }

    /// A local edit committed between the apply's read of the row and its write (which
    /// changes another field) must not enter the base: it would look agreed and never go out.
    #[test]
    fn a_local_edit_made_during_the_write_stays_out_of_the_base() {
        let m = map(&[]);
        let r = rules(&m, &GUARDS);
        let state =
            State { base: Some(obj(json!({"name": "Ada", "email": "a@x", "tier": "1"}))), ..Default::default() };
        let read = obj(json!({"id": 1, "name": "Ada", "email": "a@x", "tier": "1"}));
        let inc = incoming(json!({"name": "Ada", "email": "a@x", "tier": "2"}));
        let Decision::Write(w) = decide(&r, &inc, &state, Some(&read)).decision else { panic!() };
        assert_eq!(Value::Object(w.values.clone()), json!({"tier": "2"}));
        // Stored after a concurrent local edit of the email.
        let stored = obj(json!({"id": 1, "name": "Ada", "email": "L@x", "tier": "2"}));
        let s = settle(&r, &inc, &stored, &w);
        assert_eq!(s.base.get("email"), Some(&json!("a@x")), "the remote still holds a@x");
        assert_eq!(s.base.get("tier"), Some(&json!("2")));
    }

    #[test]
    fn keys_are_written_as_capture_writes_them() {
        assert_eq!(key_text(&json!("a")), "a");
        assert_eq!(key_text(&serde_json::from_str::<Value>("7.0").unwrap()), "7");
        assert_eq!(key_text(&Value::Null), "null");
    }
}
