//! One record: map → guards (fingerprint, echo) → contention → write → id map, base, events,
//! conflicts.

use super::{subxact, Batch, Row};
use crate::capture::enqueue::{enqueue, enqueue_with_fields, Op};
use crate::error::{spi_opt, OrRaise};
use crate::logic::canonical;
use crate::logic::contention::{self, Context, FieldState};
use crate::logic::fingerprint;
use crate::logic::guards::{self, LastStatus};
use crate::logic::inbound::{self, Incoming};
use crate::logic::link_spec::{Guard, Side};
use crate::origin;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

struct Outcome {
    local_key: Option<String>,
    status: &'static str,
    reason: Option<String>,
}

impl Batch {
    pub(super) fn apply(&self, rec: &Value) -> Row {
        let key_hint = rec.get(&self.link.remote_key_field).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        let inc = match inbound::read(rec, &self.map, self.reading()) {
            Ok(inc) => inc,
            Err(reason) => {
                self.event(None, key_hint.as_deref(), "failed", Some(&reason), None);
                return (key_hint, None, "failed".into(), Some(reason));
            }
        };
        match subxact::run(|| self.apply_one(&inc)) {
            Ok(o) => (Some(inc.remote_key), o.local_key, o.status.into(), o.reason),
            Err(message) => {
                let reason = self.name_the_field(&inc).unwrap_or(message);
                self.event(None, Some(&inc.remote_key), "failed", Some(&reason), None);
                (Some(inc.remote_key), None, "failed".into(), Some(reason))
            }
        }
    }

    fn apply_one(&self, inc: &Incoming) -> Outcome {
        let state = spi_opt::<JsonB>(
            "SELECT to_jsonb(r) FROM syncbridge._record r WHERE link_id = $1 AND remote_key = $2",
            &[self.link.id.into(), inc.remote_key.as_str().into()],
        )
        .or_raise()
        .map(|j| j.0)
        .unwrap_or(Value::Null);
        let paired_key = state["local_key"].as_str().map(str::to_owned).or_else(|| inc.local_id.clone());
        let local_row = paired_key.as_deref().and_then(|k| self.row_json(k));
        let local_key = local_row.as_ref().and(paired_key);

        let volatile: Vec<&str> = self.map.fields.iter().filter(|f| f.volatile).map(|f| f.remote.as_str()).collect();
        let fp = fingerprint::of_record(&Value::Object(inc.fields.clone()), &volatile);
        if inc.deleted {
            return self.apply_delete(inc, local_key, &fp);
        }
        let last_status = state["in_status"].as_str().and_then(LastStatus::parse);
        if self.guards.contains(&Guard::Fingerprint)
            && state["in_fingerprint"].as_str() == Some(fp.as_str())
            && matches!(last_status, Some(LastStatus::Delivered | LastStatus::Conflict))
            && local_row.is_some()
        {
            let reason = "same fingerprint as the last record received";
            self.event(local_key.as_deref(), Some(&inc.remote_key), "blocked", Some(reason), Some(&fp));
            return Outcome { local_key, status: "blocked", reason: Some(reason.into()) };
        }

        let local = local_row.as_ref().map(|row| self.to_remote_names(row));
        if let Some(local) = &local {
            // The local row over the fields the record carries, fingerprinted the same way.
            let carried: Map<String, Value> =
                inc.fields.keys().map(|k| (k.clone(), local.get(k).cloned().unwrap_or(Value::Null))).collect();
            let local_fp = fingerprint::of_record(&Value::Object(carried), &volatile);
            if let Err(stop) = guards::inbound_echo(&self.guards, &fp, Some(&local_fp)) {
                let reason = stop.reason();
                self.remember(local_key.as_deref().expect("a local row has a key"), inc, None, &fp, "ignored");
                self.event(local_key.as_deref(), Some(&inc.remote_key), "ignored", Some(reason), Some(&fp));
                return Outcome { local_key, status: "ignored", reason: Some(reason.into()) };
            }
        }

        let created_by = state["created_by"].as_str().map(|s| if s == "local" { Side::Local } else { Side::Remote });
        let resolution = local.as_ref().map(|local| {
            let base = state["base"].as_object();
            let null = Value::Null;
            let fields: Vec<FieldState<'_>> = self
                .map
                .fields
                .iter()
                .filter(|f| inc.fields.contains_key(&f.remote))
                .map(|f| FieldState {
                    name: &f.remote,
                    base: base.and_then(|b| b.get(&f.remote)),
                    local: local.get(&f.remote).unwrap_or(&null),
                    remote: inc.fields.get(&f.remote),
                    owner: f.owner,
                })
                .collect();
            let local_time = self
                .setting("local_time_column")
                .and_then(|col| local_row.as_ref()?.get(col)?.as_str().and_then(canonical::instant));
            let remote_vs_local_time = inc.modified.zip(local_time).map(|(r, l)| r.cmp(&l));
            contention::resolve(&fields, Context { policy: self.contention, remote_vs_local_time, created_by })
        });
        let write: Vec<&str> = match &resolution {
            Some(r) => r.write.iter().map(String::as_str).collect(),
            None => inc.fields.keys().map(String::as_str).collect(),
        };
        let values: Map<String, Value> = write
            .iter()
            .filter_map(|remote| self.map.by_remote(remote).map(|f| (f.column.clone(), inc.fields[*remote].clone())))
            .collect();

        let stored = if local.is_some() && values.is_empty() {
            Value::Object(local_row.clone().expect("checked above"))
        } else {
            origin::with_origin(&self.link.name, || {
                Spi::get_one_with_args::<JsonB>(
                    "SELECT syncbridge._write_row($1::regclass, $2, $3, $4)",
                    &[
                        self.link.relid().into(),
                        self.link.key_column.as_str().into(),
                        local_key.as_deref().into(),
                        JsonB(Value::Object(values)).into(),
                    ],
                )
                .or_raise()
                .map(|j| j.0)
                .unwrap_or(Value::Null)
            })
        };
        let new_key = key_text(&stored[&self.link.key_column]);
        let conflicts = resolution.map(|r| r.conflicts).unwrap_or_default();
        let (status, reason) = if conflicts.is_empty() {
            ("delivered", None)
        } else {
            let fields: Vec<String> =
                conflicts.iter().map(|c| format!("{} to {} by {}", c.field, c.winner.name(), c.rule.name())).collect();
            ("conflict", Some(format!("contended: {}", fields.join(", "))))
        };
        for c in &conflicts {
            Spi::run_with_args(
                "INSERT INTO syncbridge._conflict (link_id, local_key, remote_key, field, base, local, remote, winner, rule) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    self.link.id.into(),
                    new_key.as_str().into(),
                    inc.remote_key.as_str().into(),
                    c.field.as_str().into(),
                    c.base.clone().map(JsonB).into(),
                    JsonB(c.local.clone()).into(),
                    JsonB(c.remote.clone()).into(),
                    c.winner.name().into(),
                    c.rule.name().into(),
                ],
            )
            .or_raise();
        }
        let base = self.to_remote_names(stored.as_object().expect("a stored row is an object"));
        self.reflect_and_write_back(inc, &new_key, &base, local.is_none());
        self.remember(&new_key, inc, Some(base), &fp, status);
        self.event(Some(&new_key), Some(&inc.remote_key), status, reason.as_deref(), Some(&fp));
        Outcome { local_key: Some(new_key), status, reason }
    }

    /// A tombstone: delete the row, mark it deleted, or ignore it, as the link's `deletes`
    /// setting says (default `delete`).
    fn apply_delete(&self, inc: &Incoming, local_key: Option<String>, fp: &str) -> Outcome {
        let policy = self.setting("deletes").unwrap_or("delete");
        let (status, reason) = match (&local_key, policy) {
            (None, _) => ("ignored", "already absent locally"),
            (Some(_), "ignore") => ("ignored", "deletes are ignored on this link"),
            (Some(key), "soft_delete") => {
                let column = self.setting("soft_delete_column").unwrap_or_else(|| {
                    crate::error::SyncError::new(
                        pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                        format!("link \"{}\" soft-deletes but has no soft_delete_column", self.link.name),
                        "Name the column: SELECT syncbridge.alter_link(<link>, '{\"soft_delete_column\": \"deleted\"}');",
                    )
                    .raise()
                });
                origin::with_origin(&self.link.name, || {
                    Spi::run_with_args(
                        "SELECT syncbridge._soft_delete($1::regclass, $2, $3, $4)",
                        &[
                            self.link.relid().into(),
                            self.link.key_column.as_str().into(),
                            key.as_str().into(),
                            column.into(),
                        ],
                    )
                    .or_raise()
                });
                self.remember(key, inc, None, fp, "delivered");
                ("delivered", "soft-deleted")
            }
            (Some(key), _) => {
                origin::with_origin(&self.link.name, || {
                    Spi::run_with_args(
                        "SELECT syncbridge._delete_row($1::regclass, $2, $3)",
                        &[self.link.relid().into(), self.link.key_column.as_str().into(), key.as_str().into()],
                    )
                    .or_raise()
                });
                Spi::run_with_args(
                    "DELETE FROM syncbridge._record WHERE link_id = $1 AND local_key = $2",
                    &[self.link.id.into(), key.as_str().into()],
                )
                .or_raise();
                ("delivered", "deleted")
            }
        };
        self.event(local_key.as_deref(), Some(&inc.remote_key), status, Some(reason), Some(fp));
        Outcome { local_key, status, reason: Some(reason.into()) }
    }

    /// The local row with this key as jsonb (local column names).
    fn row_json(&self, key: &str) -> Option<Map<String, Value>> {
        spi_opt::<JsonB>(
            "SELECT syncbridge._row_json($1::regclass, $2, $3)",
            &[self.link.relid().into(), self.link.key_column.as_str().into(), key.into()],
        )
        .or_raise()
        .and_then(|j| match j.0 {
            Value::Object(m) => Some(m),
            _ => None,
        })
    }

    /// After a write: queue the fields the local side added or changed (defaults, generated
    /// values, the table's own triggers) to go back once (`reflect` guard), and, for a row this
    /// record created, the new local id for the remote (`local_id_field`).
    fn reflect_and_write_back(&self, inc: &Incoming, key: &str, stored: &Map<String, Value>, created: bool) {
        let keys = [key.to_string()];
        if self.guards.contains(&Guard::Reflect) {
            let differing: Vec<String> = stored
                .iter()
                .filter(|(name, value)| match inc.fields.get(*name) {
                    Some(sent) => canonical::to_canonical(sent) != canonical::to_canonical(value),
                    None => created && !value.is_null(),
                })
                .map(|(name, _)| name.clone())
                .collect();
            if !differing.is_empty() {
                enqueue_with_fields(self.link.id, Op::Reflect, &keys, Some(&self.link.name), Some(&differing));
            }
        }
        if created && self.setting("local_id_field").is_some() {
            enqueue(self.link.id, Op::Writeback, &keys, Some(&self.link.name));
        }
    }

    /// A local row's synced fields under their remote names.
    /// The local key column is left out when its remote name is the remote key field, unless
    /// a rule maps it there: a local id is not the remote's id.
    fn to_remote_names(&self, row: &Map<String, Value>) -> Map<String, Value> {
        self.map
            .fields
            .iter()
            .filter(|f| f.remote != self.link.remote_key_field || f.explicit_remote)
            .map(|f| (f.remote.clone(), row.get(&f.column).cloned().unwrap_or(Value::Null)))
            .collect()
    }

    /// Pairs the keys and stores what was received (and, after a write, the new base).
    fn remember(&self, local_key: &str, inc: &Incoming, base: Option<Map<String, Value>>, fp: &str, status: &str) {
        Spi::run_with_args(
            "INSERT INTO syncbridge._record AS r (link_id, local_key, remote_key, created_by, base, in_fingerprint, in_status, in_at) \
             VALUES ($1, $2, $3, 'remote', $4, $5, $6, now()) \
             ON CONFLICT (link_id, local_key) DO UPDATE SET remote_key = EXCLUDED.remote_key, \
                 base = coalesce(EXCLUDED.base, r.base), in_fingerprint = EXCLUDED.in_fingerprint, \
                 in_status = EXCLUDED.in_status, in_at = EXCLUDED.in_at, updated_at = now()",
            &[
                self.link.id.into(),
                local_key.into(),
                inc.remote_key.as_str().into(),
                base.map(|b| JsonB(Value::Object(b))).into(),
                fp.into(),
                status.into(),
            ],
        )
        .or_raise();
    }

    fn event(
        &self,
        local_key: Option<&str>,
        remote_key: Option<&str>,
        status: &str,
        reason: Option<&str>,
        fp: Option<&str>,
    ) {
        Spi::run_with_args(
            "INSERT INTO syncbridge._event (link_id, direction, local_key, remote_key, status, reason, fingerprint) \
             VALUES ($1, 'inbound', $2, $3, $4, $5, $6)",
            &[self.link.id.into(), local_key.into(), remote_key.into(), status.into(), reason.into(), fp.into()],
        )
        .or_raise();
    }

    /// After a failed write: the first field whose value its column does not accept.
    fn name_the_field(&self, inc: &Incoming) -> Option<String> {
        let values: Map<String, Value> = inc
            .fields
            .iter()
            .filter_map(|(remote, v)| self.map.by_remote(remote).map(|f| (f.column.clone(), v.clone())))
            .collect();
        subxact::run(|| {
            spi_opt::<String>(
                "SELECT syncbridge._misfit_field($1::regclass, $2)",
                &[self.link.relid().into(), JsonB(Value::Object(values)).into()],
            )
            .or_raise()
        })
        .ok()
        .flatten()
    }
}

/// A key value from a stored row as text, the way capture writes keys.
fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => canonical::canonical_number(&n.to_string()).unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}
