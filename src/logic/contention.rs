//! Contention: what to do when a record arrives from the remote while the local row may have
//! changed too. Decided field by field against the base snapshot of the last synced version.
//!
//! A record is *contended* when both sides changed it since the base. Without contention the
//! side that changed wins. With contention, each field is settled by its owner (from
//! `set_field`) if it has one, else by the link's policy:
//!
//! | policy                  | winner of every field                                        |
//! |-------------------------|--------------------------------------------------------------|
//! | `last_write_wins`       | field by field: the side that changed it; both: the later   |
//! |                         | write (record times; tie or unknown: the remote)             |
//! | `newer_wins`            | the side with the newer modification time (tie: the remote)  |
//! | `system_of_record:X`    | X                                                            |
//! | `record_owner`          | the side that created the record                             |
//! | `merge`                 | the side that changed the field; both: owner, else newer     |
//!
//! Field owners come first under every policy, so `merge` and `last_write_wins` settle alike;
//! both keep an edit that only one side made (before, `last_write_wins` gave the remote the
//! whole record and reverted local edits of fields the remote never touched).
//! Whenever the losing side had changed a field (so its edit is overwritten or not taken), a
//! [`Conflict`] records base, local and remote value, the winner and the rule: no edit is
//! lost silently.

use super::canonical;
use super::link_spec::{Contention, Side};
use serde_json::Value;
use std::cmp::Ordering;

/// One synced field of the record, in remote field names.
#[derive(Debug, Clone, Copy)]
pub struct FieldState<'a> {
    pub name: &'a str,
    /// Value at the last sync; `None` when the record has no base yet.
    pub base: Option<&'a Value>,
    pub local: &'a Value,
    /// Value in the incoming record; `None` when the record does not carry the field.
    pub remote: Option<&'a Value>,
    pub owner: Option<Side>,
}

/// What the policy needs beside the fields.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub policy: Contention,
    /// The remote modification time compared with the local one (`Greater`: remote newer);
    /// `None` when either time is unknown.
    pub remote_vs_local_time: Option<Ordering>,
    /// Which side created the record, when known.
    pub created_by: Option<Side>,
}

/// The rule that settled a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Only one side changed the field (or the record).
    OneSideChanged,
    FieldOwner,
    LastWriteWins,
    NewerWins,
    /// `newer_wins` without both times: falls back to the remote, like `last_write_wins`.
    NewerWinsNoTime,
    SystemOfRecord,
    RecordOwner,
    /// `record_owner` for a record of unknown origin: falls back to the remote.
    RecordOwnerUnknown,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::OneSideChanged => "one_side_changed",
            Rule::FieldOwner => "field_owner",
            Rule::LastWriteWins => "last_write_wins",
            Rule::NewerWins => "newer_wins",
            Rule::NewerWinsNoTime => "newer_wins_without_times",
            Rule::SystemOfRecord => "system_of_record",
            Rule::RecordOwner => "record_owner",
            Rule::RecordOwnerUnknown => "record_owner_unknown",
        }
    }
}

/// A field where one side's change did not win.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub field: String,
    pub base: Option<Value>,
    pub local: Value,
    pub remote: Value,
    pub winner: Side,
    pub rule: Rule,
}

/// The decision for one incoming record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resolution {
    /// Both sides changed the record since the base.
    pub contended: bool,
    /// Fields to write locally with the remote value.
    pub write: Vec<String>,
    /// Fields whose local value won over a different remote one: they must be sent back so
    /// the remote converges.
    pub send_back: Vec<String>,
    pub conflicts: Vec<Conflict>,
}

impl Resolution {
    /// Nothing to write locally.
    pub fn is_noop(&self) -> bool {
        self.write.is_empty()
    }
}

/// Settles an incoming record against the local row and the base.
pub fn resolve(fields: &[FieldState<'_>], ctx: Context) -> Resolution {
    let changed = |from: Option<&Value>, to: Option<&Value>| match (from, to) {
        (Some(b), Some(v)) => !same(b, v),
        // Without a base nothing can be told apart: treat the side as unchanged.
        (None, _) | (_, None) => false,
    };
    let local_changed = fields.iter().any(|f| changed(f.base, Some(f.local)));
    let remote_changed = fields.iter().any(|f| f.remote.is_some() && changed(f.base, f.remote));
    let contended = local_changed && remote_changed;
    let mut out = Resolution { contended, ..Default::default() };

    for f in fields {
        let Some(remote) = f.remote else { continue };
        if same(remote, f.local) {
            continue;
        }
        let l = changed(f.base, Some(f.local));
        let r = changed(f.base, Some(remote));
        let (winner, rule) = if !contended {
            // Only one side moved; a record with no base is taken from the remote.
            if local_changed {
                (Side::Local, Rule::OneSideChanged)
            } else {
                (Side::Remote, Rule::OneSideChanged)
            }
        } else {
            settle(f, l, r, ctx)
        };
        match winner {
            Side::Remote => out.write.push(f.name.to_string()),
            Side::Local => out.send_back.push(f.name.to_string()),
        }
        let loser_changed = match winner {
            Side::Remote => l,
            Side::Local => r,
        };
        if contended && loser_changed {
            out.conflicts.push(Conflict {
                field: f.name.to_string(),
                base: f.base.cloned(),
                local: f.local.clone(),
                remote: remote.clone(),
                winner,
                rule,
            });
        }
    }
    out
}

/// Equal as the other system sees it: `12.5` and `12.50`, or two spellings of one instant,
/// are the same value.
pub fn same(a: &Value, b: &Value) -> bool {
    a == b || canonical::to_canonical(a) == canonical::to_canonical(b)
}

/// The winner of one field of a contended record.
fn settle(f: &FieldState<'_>, local_changed: bool, remote_changed: bool, ctx: Context) -> (Side, Rule) {
    if let Some(owner) = f.owner {
        return (owner, Rule::FieldOwner);
    }
    match ctx.policy {
        Contention::LastWriteWins => match (local_changed, remote_changed) {
            (true, false) => (Side::Local, Rule::OneSideChanged),
            (false, true) => (Side::Remote, Rule::OneSideChanged),
            _ => match ctx.remote_vs_local_time {
                Some(Ordering::Less) => (Side::Local, Rule::LastWriteWins),
                _ => (Side::Remote, Rule::LastWriteWins),
            },
        },
        Contention::NewerWins => newer(ctx),
        Contention::SystemOfRecord(side) => (side, Rule::SystemOfRecord),
        Contention::RecordOwner => match ctx.created_by {
            Some(side) => (side, Rule::RecordOwner),
            None => (Side::Remote, Rule::RecordOwnerUnknown),
        },
        Contention::Merge => match (local_changed, remote_changed) {
            (true, false) => (Side::Local, Rule::OneSideChanged),
            (false, true) => (Side::Remote, Rule::OneSideChanged),
            _ => newer(ctx),
        },
    }
}

fn newer(ctx: Context) -> (Side, Rule) {
    match ctx.remote_vs_local_time {
        Some(Ordering::Less) => (Side::Local, Rule::NewerWins),
        Some(_) => (Side::Remote, Rule::NewerWins),
        None => (Side::Remote, Rule::NewerWinsNoTime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(policy: Contention) -> Context {
        Context { policy, remote_vs_local_time: None, created_by: None }
    }

    /// Two fields: `a` and `b`, base a=1 b=1.
    fn record<'a>(
        base: &'a [Value; 2],
        local: &'a [Value; 2],
        remote: &'a [Value; 2],
        owners: [Option<Side>; 2],
    ) -> Vec<FieldState<'a>> {
        ["a", "b"]
            .iter()
            .enumerate()
            .map(|(i, name)| FieldState {
                name,
                base: Some(&base[i]),
                local: &local[i],
                remote: Some(&remote[i]),
                owner: owners[i],
            })
            .collect()
    }

    const NO_OWNERS: [Option<Side>; 2] = [None, None];

    #[test]
    fn only_the_remote_changed_so_it_is_written_for_every_policy() {
        let (base, local, remote) = ([json!(1), json!(1)], [json!(1), json!(1)], [json!(2), json!(1)]);
        for name in Contention::NAMES {
            let r = resolve(&record(&base, &local, &remote, NO_OWNERS), ctx(Contention::parse(name).unwrap()));
            assert!(!r.contended, "{name}");
            assert_eq!(r.write, vec!["a"], "{name}");
            assert!(r.send_back.is_empty() && r.conflicts.is_empty(), "{name}");
        }
    }

    #[test]
    fn only_the_local_side_changed_so_nothing_is_written_and_local_goes_back() {
        let (base, local, remote) = ([json!(1), json!(1)], [json!(5), json!(1)], [json!(1), json!(1)]);
        for name in Contention::NAMES {
            let r = resolve(&record(&base, &local, &remote, NO_OWNERS), ctx(Contention::parse(name).unwrap()));
            assert!(!r.contended && r.is_noop(), "{name}");
            assert_eq!(r.send_back, vec!["a"], "{name}");
        }
    }

    #[test]
    fn an_echo_changes_nothing() {
        let (base, local, remote) = ([json!(1), json!(1)], [json!(5), json!(1)], [json!(5), json!(1)]);
        let r = resolve(&record(&base, &local, &remote, NO_OWNERS), ctx(Contention::LastWriteWins));
        assert_eq!(r, Resolution { contended: true, ..Default::default() });
    }

    #[test]
    fn without_a_base_the_remote_is_taken() {
        let (local, remote) = (json!("x"), json!("y"));
        let f = [FieldState { name: "a", base: None, local: &local, remote: Some(&remote), owner: None }];
        let r = resolve(&f, ctx(Contention::Merge));
        assert_eq!(r.write, vec!["a"]);
        assert!(!r.contended && r.conflicts.is_empty());
    }

    // Both sides changed different fields: local a, remote b.
    fn different_fields() -> ([Value; 2], [Value; 2], [Value; 2]) {
        ([json!(1), json!(1)], [json!(2), json!(1)], [json!(1), json!(3)])
    }

    #[test]
    fn merge_keeps_both_sides_changes_of_different_fields() {
        let (base, local, remote) = different_fields();
        let r = resolve(&record(&base, &local, &remote, NO_OWNERS), ctx(Contention::Merge));
        assert!(r.contended);
        assert_eq!(r.write, vec!["b"]);
        assert_eq!(r.send_back, vec!["a"]);
        assert!(r.conflicts.is_empty(), "no field lost a change: {:?}", r.conflicts);
    }

    /// Issue 13 point 4: r sets b, then l sets a (newer): the remote never changed a, so its
    /// old value must not revert the local edit.
    #[test]
    fn last_write_wins_is_field_by_field_and_keeps_an_edit_only_one_side_made() {
        let (base, local, remote) = different_fields();
        let c =
            Context { policy: Contention::LastWriteWins, remote_vs_local_time: Some(Ordering::Less), created_by: None };
        let r = resolve(&record(&base, &local, &remote, NO_OWNERS), c);
        assert!(r.contended);
        assert_eq!(r.write, vec!["b"]);
        assert_eq!(r.send_back, vec!["a"]);
        assert!(r.conflicts.is_empty(), "{:?}", r.conflicts);
    }

    #[test]
    fn last_write_wins_gives_a_field_both_sides_changed_to_the_later_write() {
        let (base, local, remote) = ([json!(1), json!(1)], [json!(2), json!(1)], [json!(3), json!(1)]);
        let fields = record(&base, &local, &remote, NO_OWNERS);
        let with = |t| Context { policy: Contention::LastWriteWins, remote_vs_local_time: t, created_by: None };
        let r = resolve(&fields, with(Some(Ordering::Less)));
        assert_eq!(r.send_back, vec!["a"]);
        let c = &r.conflicts[0];
        assert_eq!((c.field.as_str(), c.winner, c.rule), ("a", Side::Local, Rule::LastWriteWins));
        assert_eq!((c.base.clone(), c.local.clone(), c.remote.clone()), (Some(json!(1)), json!(2), json!(3)));
        for t in [Some(Ordering::Greater), Some(Ordering::Equal), None] {
            let r = resolve(&fields, with(t));
            assert_eq!(r.write, vec!["a"], "{t:?}");
            assert_eq!((r.conflicts[0].winner, r.conflicts[0].rule), (Side::Remote, Rule::LastWriteWins), "{t:?}");
        }
    }

    #[test]
    fn system_of_record_truth_table() {
        let (base, local, remote) = different_fields();
        let r = resolve(&record(&base, &local, &remote, NO_OWNERS), ctx(Contention::SystemOfRecord(Side::Local)));
        assert!(r.write.is_empty());
        assert_eq!(r.send_back, vec!["a", "b"]);
        assert_eq!(r.conflicts.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(), vec!["b"]);
        let r = resolve(&record(&base, &local, &remote, NO_OWNERS), ctx(Contention::SystemOfRecord(Side::Remote)));
        assert_eq!(r.write, vec!["a", "b"]);
        assert_eq!(r.conflicts.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(), vec!["a"]);
    }

    #[test]
    fn newer_wins_truth_table() {
        let (base, local, remote) = ([json!(1), json!(1)], [json!(2), json!(1)], [json!(3), json!(1)]);
        let fields = record(&base, &local, &remote, NO_OWNERS);
        let with = |t| Context { policy: Contention::NewerWins, remote_vs_local_time: t, created_by: None };
        let r = resolve(&fields, with(Some(Ordering::Greater)));
        assert_eq!((r.write.clone(), r.conflicts[0].rule), (vec!["a".to_string()], Rule::NewerWins));
        let r = resolve(&fields, with(Some(Ordering::Equal)));
        assert_eq!(r.write, vec!["a"]);
        let r = resolve(&fields, with(Some(Ordering::Less)));
        assert!(r.write.is_empty());
        assert_eq!((r.send_back.clone(), r.conflicts[0].winner), (vec!["a".to_string()], Side::Local));
        let r = resolve(&fields, with(None));
        assert_eq!((r.write.clone(), r.conflicts[0].rule), (vec!["a".to_string()], Rule::NewerWinsNoTime));
    }

    #[test]
    fn record_owner_truth_table() {
        let (base, local, remote) = ([json!(1), json!(1)], [json!(2), json!(1)], [json!(3), json!(1)]);
        let fields = record(&base, &local, &remote, NO_OWNERS);
        let with = |c| Context { policy: Contention::RecordOwner, remote_vs_local_time: None, created_by: c };
        assert_eq!(resolve(&fields, with(Some(Side::Local))).send_back, vec!["a"]);
        assert_eq!(resolve(&fields, with(Some(Side::Remote))).write, vec!["a"]);
        assert_eq!(resolve(&fields, with(None)).conflicts[0].rule, Rule::RecordOwnerUnknown);
    }

    #[test]
    fn the_same_field_changed_on_both_sides_goes_to_its_owner_with_a_conflict() {
        let (base, local, remote) = ([json!(1), json!(1)], [json!(2), json!(1)], [json!(3), json!(1)]);
        for (owner, winner) in [(Side::Local, Side::Local), (Side::Remote, Side::Remote)] {
            for name in Contention::NAMES {
                let r = resolve(
                    &record(&base, &local, &remote, [Some(owner), None]),
                    ctx(Contention::parse(name).unwrap()),
                );
                assert_eq!(r.conflicts.len(), 1, "{name}");
                let c = &r.conflicts[0];
                assert_eq!((c.winner, c.rule), (winner, Rule::FieldOwner), "{name}");
            }
        }
    }

    #[test]
    fn merge_settles_a_field_changed_on_both_sides_by_time() {
        let (base, local, remote) = ([json!(1), json!(1)], [json!(2), json!(7)], [json!(3), json!(1)]);
        let c = Context { policy: Contention::Merge, remote_vs_local_time: Some(Ordering::Less), created_by: None };
        let r = resolve(&record(&base, &local, &remote, NO_OWNERS), c);
        assert!(r.write.is_empty());
        assert_eq!(r.send_back, vec!["a", "b"]);
        assert_eq!(r.conflicts.len(), 1);
        assert_eq!((r.conflicts[0].field.as_str(), r.conflicts[0].rule), ("a", Rule::NewerWins));
    }

    #[test]
    fn values_are_compared_canonically() {
        let base: Value = serde_json::from_str("12.50").unwrap();
        let remote: Value = serde_json::from_str("12.5").unwrap();
        let local = json!(99);
        let f = [FieldState { name: "balance", base: Some(&base), local: &local, remote: Some(&remote), owner: None }];
        let r = resolve(&f, ctx(Contention::Merge));
        assert!(!r.contended, "the remote did not change 12.50");
        assert!(r.write.is_empty());
        assert_eq!(r.send_back, vec!["balance"]);
    }

    #[test]
    fn fields_missing_from_the_incoming_record_are_left_alone() {
        let (base, local) = (json!(1), json!(2));
        let f = [FieldState { name: "a", base: Some(&base), local: &local, remote: None, owner: None }];
        let r = resolve(&f, ctx(Contention::LastWriteWins));
        assert!(r.write.is_empty() && r.send_back.is_empty() && !r.contended);
    }
}
