//! One record: map → guards (fingerprint, echo) → contention → write → id map, base, events,
//! conflicts.

use super::{subxact, Batch, Row};
use crate::capture::enqueue::{enqueue, enqueue_with_fields, Op};
use crate::error::{spi_opt, OrRaise};
use crate::logic::decide::{decide, settle, Decided, Decision, State};
use crate::logic::guards::Stop;
use crate::logic::inbound::{self, Incoming};
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
        let text = |name: &str| state[name].as_str().map(str::to_owned);
        let state = State {
            local_key: text("local_key"),
            created_by: text("created_by"),
            base: state["base"].as_object().cloned(),
            in_fingerprint: text("in_fingerprint"),
            in_status: text("in_status"),
        };
        let paired_key = state.local_key.clone().or_else(|| inc.local_id.clone());
        let local_row = paired_key.as_deref().and_then(|k| self.row_json(k));
        let local_key = local_row.as_ref().and(paired_key);

        let rules = self.rules();
        let Decided { fingerprint: fp, decision } = decide(&rules, inc, &state, local_row.as_ref());
        let write = match decision {
            Decision::Skip { status, reason } => {
                self.event(local_key.as_deref(), Some(&inc.remote_key), status, Some(reason), Some(&fp));
                return Outcome { local_key, status, reason: Some(reason.into()) };
            }
            Decision::Echo => {
                let reason = Stop::NoChange.reason();
                self.remember(local_key.as_deref().expect("a local row has a key"), inc, None, &fp, "ignored");
                self.event(local_key.as_deref(), Some(&inc.remote_key), "ignored", Some(reason), Some(&fp));
                return Outcome { local_key, status: "ignored", reason: Some(reason.into()) };
            }
            Decision::Delete | Decision::SoftDelete { .. } => {
                return self.apply_delete(
                    inc,
                    local_key.expect("a tombstone is applied to a local row"),
                    &decision,
                    &fp,
                )
            }
            Decision::Write(write) => write,
        };

        let stored = if write.keeps_the_row() {
            Value::Object(local_row.clone().expect("checked above"))
        } else {
            origin::with_origin(&self.link.name, || {
                Spi::get_one_with_args::<JsonB>(
                    "SELECT syncbridge._write_row($1::regclass, $2, $3, $4)",
                    &[
                        self.link.relid().into(),
                        self.link.key_column.as_str().into(),
                        local_key.as_deref().into(),
                        JsonB(Value::Object(write.values.clone())).into(),
                    ],
                )
                .or_raise()
                .map(|j| j.0)
                .unwrap_or(Value::Null)
            })
        };
        let stored = stored.as_object().expect("a stored row is an object");
        let settled = settle(&rules, inc, stored, !write.update, &write.conflicts);
        let new_key = settled.local_key;
        for c in &write.conflicts {
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
        let keys = [new_key.clone()];
        if !settled.reflect.is_empty() {
            enqueue_with_fields(self.link.id, Op::Reflect, &keys, Some(&self.link.name), Some(&settled.reflect));
        }
        if settled.write_back {
            enqueue(self.link.id, Op::Writeback, &keys, Some(&self.link.name));
        }
        self.remember(&new_key, inc, Some(settled.base), &fp, settled.status);
        self.event(Some(&new_key), Some(&inc.remote_key), settled.status, settled.reason.as_deref(), Some(&fp));
        Outcome { local_key: Some(new_key), status: settled.status, reason: settled.reason }
    }

    /// A tombstone for a local row: delete it, or mark it deleted.
    fn apply_delete(&self, inc: &Incoming, key: String, decision: &Decision, fp: &str) -> Outcome {
        let reason = match decision {
            Decision::SoftDelete { column } => {
                let column = column.as_deref().unwrap_or_else(|| self.no_soft_delete_column().raise());
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
                self.remember(&key, inc, None, fp, "delivered");
                "soft-deleted"
            }
            _ => {
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
                "deleted"
            }
        };
        self.event(Some(&key), Some(&inc.remote_key), "delivered", Some(reason), Some(fp));
        Outcome { local_key: Some(key), status: "delivered", reason: Some(reason.into()) }
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
