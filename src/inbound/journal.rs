//! What apply keeps beside the table — the id map and base snapshots (`_record`), one event
//! per record (`_event`), the local edits that lost (`_conflict`) — gathered for a set of
//! records and written with one statement each, in record order.

use crate::logic::contention::Conflict;
use crate::logic::status::Status;
use crate::spi::plans;
use serde_json::{Map, Value};

#[derive(Default)]
pub struct Journal {
    remember: Vec<Remembered>,
    forget: Vec<String>,
    events: Vec<Event>,
    conflicts: Vec<ConflictRow>,
    /// (local key, remote key): remote records that carry the local id of a row paired with
    /// another one, and that other one.
    duplicates: Vec<(String, String)>,
}

struct Remembered {
    local_key: String,
    remote_key: String,
    /// The new base snapshot as JSON text; `None` keeps the stored one.
    base: Option<String>,
    fingerprint: String,
    status: Status,
}

struct Event {
    local_key: Option<String>,
    remote_key: Option<String>,
    status: Status,
    reason: Option<String>,
    fingerprint: Option<String>,
}

struct ConflictRow {
    local_key: String,
    remote_key: String,
    field: String,
    base: Option<String>,
    local: String,
    remote: String,
    winner: &'static str,
    rule: &'static str,
}

impl Journal {
    /// Pairs the keys and stores what was received (and, after a write, the new base).
    pub fn remember(
        &mut self,
        local_key: &str,
        remote_key: &str,
        base: Option<&Map<String, Value>>,
        fingerprint: &str,
        status: Status,
    ) {
        self.remember.push(Remembered {
            local_key: local_key.to_owned(),
            remote_key: remote_key.to_owned(),
            base: base.map(|b| serde_json::to_string(b).expect("a JSON object serialises")),
            fingerprint: fingerprint.to_owned(),
            status,
        });
    }

    /// Drops the state of a deleted row.
    pub fn forget(&mut self, local_key: &str) {
        self.forget.push(local_key.to_owned());
    }

    pub fn event(
        &mut self,
        local_key: Option<&str>,
        remote_key: Option<&str>,
        status: Status,
        reason: Option<&str>,
        fingerprint: Option<&str>,
    ) {
        self.events.push(Event {
            local_key: local_key.map(str::to_owned),
            remote_key: remote_key.map(str::to_owned),
            status,
            reason: reason.map(str::to_owned),
            fingerprint: fingerprint.map(str::to_owned),
        });
    }

    pub fn duplicate(&mut self, local_key: &str, remote_key: &str) {
        self.duplicates.push((local_key.to_owned(), remote_key.to_owned()));
    }

    pub fn conflicts(&mut self, local_key: &str, remote_key: &str, conflicts: &[Conflict]) {
        self.conflicts.extend(conflicts.iter().map(|c| ConflictRow {
            local_key: local_key.to_owned(),
            remote_key: remote_key.to_owned(),
            field: c.field.clone(),
            base: c.base.as_ref().map(json_text),
            local: json_text(&c.local),
            remote: json_text(&c.remote),
            winner: c.winner.name(),
            rule: c.rule.name(),
        }));
    }

    /// Writes everything gathered, in the caller's transaction.
    pub fn write(self, link_id: i64) {
        if !self.conflicts.is_empty() {
            let c = &self.conflicts;
            plans::run(
                "INSERT INTO syncbridge._conflict (link_id, local_key, remote_key, field, base, local, remote, winner, rule) \
                 SELECT $1, u.local_key, u.remote_key, u.field, u.base::jsonb, u.local::jsonb, u.remote::jsonb, u.winner, u.rule \
                 FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) \
                      AS u(local_key, remote_key, field, base, local, remote, winner, rule)",
                &[
                    link_id.into(),
                    column(c, |r| r.local_key.as_str()).into(),
                    column(c, |r| r.remote_key.as_str()).into(),
                    column(c, |r| r.field.as_str()).into(),
                    column(c, |r| r.base.as_deref()).into(),
                    column(c, |r| r.local.as_str()).into(),
                    column(c, |r| r.remote.as_str()).into(),
                    column(c, |r| r.winner).into(),
                    column(c, |r| r.rule).into(),
                ],
            );
        }
        if !self.forget.is_empty() {
            plans::run(
                "DELETE FROM syncbridge._record WHERE link_id = $1 AND local_key = ANY ($2)",
                &[link_id.into(), self.forget.into()],
            );
        }
        if !self.remember.is_empty() {
            let r = &self.remember;
            plans::run(
                "INSERT INTO syncbridge._record AS r (link_id, local_key, remote_key, created_by, base, in_fingerprint, in_status, in_at) \
                 SELECT $1, u.local_key, u.remote_key, 'remote', u.base::jsonb, u.fingerprint, u.status, now() \
                 FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS u(local_key, remote_key, base, fingerprint, status) \
                 ON CONFLICT (link_id, local_key) DO UPDATE SET remote_key = EXCLUDED.remote_key, \
                     base = coalesce(EXCLUDED.base, r.base), in_fingerprint = EXCLUDED.in_fingerprint, \
                     in_status = EXCLUDED.in_status, in_at = EXCLUDED.in_at, updated_at = now()",
                &[
                    link_id.into(),
                    column(r, |r| r.local_key.as_str()).into(),
                    column(r, |r| r.remote_key.as_str()).into(),
                    column(r, |r| r.base.as_deref()).into(),
                    column(r, |r| r.fingerprint.as_str()).into(),
                    column(r, |r| r.status.name()).into(),
                ],
            );
        }
        if !self.duplicates.is_empty() {
            let (locals, remotes): (Vec<String>, Vec<String>) = self.duplicates.into_iter().unzip();
            plans::run(
                "SELECT syncbridge._duplicates_seen($1, $2, $3, 'inbound')",
                &[link_id.into(), locals.into(), remotes.into()],
            );
        }
        if !self.events.is_empty() {
            let e = &self.events;
            plans::run(
                "INSERT INTO syncbridge._event (link_id, direction, local_key, remote_key, status, reason, fingerprint) \
                 SELECT $1, 'inbound', u.local_key, u.remote_key, u.status, u.reason, u.fingerprint \
                 FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS u(local_key, remote_key, status, reason, fingerprint)",
                &[
                    link_id.into(),
                    column(e, |e| e.local_key.as_deref()).into(),
                    column(e, |e| e.remote_key.as_deref()).into(),
                    column(e, |e| e.status.name()).into(),
                    column(e, |e| e.reason.as_deref()).into(),
                    column(e, |e| e.fingerprint.as_deref()).into(),
                ],
            );
        }
    }
}

/// One column of rows, as an array parameter.
fn column<'a, R, T: 'a>(rows: &'a [R], f: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
}

fn json_text(value: &Value) -> String {
    serde_json::to_string(value).expect("a JSON value serialises")
}
