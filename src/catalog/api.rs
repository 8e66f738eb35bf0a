//! The SQL API for links (SPEC §8): create_link, alter_link, drop_link, pause_link,
//! resume_link, set_field.

use super::fields;
use super::link::{invalidate_table, LinkRow};
use super::regclass::Regclass;
use super::table::TableInfo;
use crate::error::{OrRaise, Result, SyncError};
use crate::logic::link_settings::{self, LinkSettings};
use crate::logic::link_spec::{self, Contention, Direction, Guard, Schedule, Side};
use crate::logic::mapping::{self, FieldRule};
use crate::logic::reach::{self, AllowList};
use crate::settings;
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use serde_json::{Map, Value};

/// Creates a link between `local_table` and `{remote_base_url}/{remote_collection}` and
/// installs its capture triggers. Returns the link id.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn create_link(
    name: &str,
    local_table: Regclass,
    remote_base_url: &str,
    remote_collection: &str,
    direction: default!(&str, "'both'"),
    key_column: default!(Option<&str>, "NULL"),
    remote_key_field: default!(&str, "'id'"),
    loop_guards: default!(Vec<String>, "'{context,fingerprint,echo}'"),
    contention: default!(&str, "'last_write_wins'"),
    schedule: default!(&str, "'realtime'"),
    track_columns: default!(bool, true),
) -> i64 {
    let spec = LinkSpec {
        name,
        relid: local_table.0,
        base_url: remote_base_url,
        collection: remote_collection,
        direction,
        key_column,
        remote_key_field,
        loop_guards: &loop_guards,
        contention,
        schedule,
        track_columns,
    };
    require_superuser("create_link");
    spec.create().or_raise()
}

struct LinkSpec<'a> {
    name: &'a str,
    relid: pg_sys::Oid,
    base_url: &'a str,
    collection: &'a str,
    direction: &'a str,
    key_column: Option<&'a str>,
    remote_key_field: &'a str,
    loop_guards: &'a [String],
    contention: &'a str,
    schedule: &'a str,
    track_columns: bool,
}

impl LinkSpec<'_> {
    fn create(&self) -> Result<i64> {
        link_spec::validate_link_name(self.name)?;
        Direction::parse(self.direction)?;
        let guards = Guard::parse_list(self.loop_guards)?;
        Contention::parse(self.contention)?;
        let schedule = Schedule::parse(self.schedule)?;
        let base_url = link_spec::normalize_base_url(self.base_url)?;
        check_allowed("remote_base_url", &base_url)?;
        let collection = link_spec::normalize_collection(self.collection)?;
        check_remote_key_field(self.remote_key_field)?;

        let table = TableInfo::load(self.relid)?;
        table.check_linkable()?;
        let key = table.resolve_key(self.key_column)?;
        fields::field_map(&table, &[], &key)?;

        if Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM syncbridge._link WHERE name = $1)",
            &[self.name.into()],
        )? == Some(true)
        {
            return Err(SyncError::new(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("link \"{}\" already exists", self.name),
                "Choose another name, or change the link with syncbridge.alter_link.",
            ));
        }
        if self.track_columns {
            check_tracking_free(&table, self.relid, None)?;
        } else {
            check_untracked_allowed(&table)?;
        }
        let guard_names: Vec<String> = guards.iter().map(|g| g.name().to_string()).collect();
        let id = Spi::get_one_with_args::<i64>(
            "INSERT INTO syncbridge._link (name, local_table, key_column, remote_base_url, remote_collection, remote_key_field, \
                                           direction, loop_guards, contention, schedule, track_columns) \
             VALUES ($1, $2::regclass, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            &[
                self.name.into(),
                self.relid.into(),
                key.as_str().into(),
                base_url.as_str().into(),
                collection.as_str().into(),
                self.remote_key_field.into(),
                self.direction.into(),
                guard_names.into(),
                self.contention.into(),
                schedule.render().as_str().into(),
                self.track_columns.into(),
            ],
        )?
        .expect("INSERT ... RETURNING gives a row");
        Spi::run_with_args("SELECT syncbridge._install_capture($1)", &[id.into()])?;
        Spi::run_with_args(
            "WITH kept AS (DELETE FROM syncbridge._kept_record WHERE link_name = $2 AND table_name = syncbridge._table_identity($3) RETURNING record) \
             INSERT INTO syncbridge._record SELECT (jsonb_populate_record(NULL::syncbridge._record, record || jsonb_build_object('link_id', $1))).* FROM kept",
            &[id.into(), self.name.into(), self.relid.into()],
        )?;
        invalidate_table(self.relid);
        Ok(id)
    }
}

/// Changes settings of a link: the `create_link` arguments (`direction`, `loop_guards`,
/// `contention`, `schedule`, `remote_base_url`, `remote_collection`, `remote_key_field`,
/// `track_columns`) and the transport and policy settings of `logic::link_spec`. A null
/// value removes a transport setting.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn alter_link(name: &str, settings: JsonB) {
    require_superuser("alter_link");
    alter(name, settings.0).or_raise()
}

fn alter(name: &str, settings: Value) -> Result<()> {
    let Value::Object(changes) = settings else {
        return Err(SyncError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "alter_link settings must be a JSON object",
            r#"Pass an object such as '{"schedule": "every 30 seconds", "timeout_ms": 5000}'."#,
        ));
    };
    let link = LinkRow::load_for_update(name)?;
    let mut extra = link.settings.clone();
    let mut columns: Map<String, Value> = Map::new();
    for (key, value) in &changes {
        let text = || {
            value.as_str().ok_or_else(|| {
                SyncError::new(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("link setting \"{key}\" must be a string"),
                    format!("Pass \"{key}\" as a JSON string."),
                )
            })
        };
        let normalized = match key.as_str() {
            "direction" => Value::from(text().and_then(|t| Ok(Direction::parse(t).map(|_| t)?))?),
            "contention" => Value::from(text().and_then(|t| Ok(Contention::parse(t).map(|_| t)?))?),
            "schedule" => Value::from(Schedule::parse(text()?)?.render()),
            "remote_base_url" => {
                let url = link_spec::normalize_base_url(text()?)?;
                check_allowed("remote_base_url", &url)?;
                Value::from(url)
            }
            "remote_collection" => Value::from(link_spec::normalize_collection(text()?)?),
            "remote_key_field" => Value::from(check_remote_key_field(text()?).map(|_| text())??),
            "loop_guards" => {
                let names: Vec<String> = serde_json::from_value(value.clone()).map_err(|_| {
                    SyncError::new(
                        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                        "link setting \"loop_guards\" must be an array of guard names",
                        format!("Valid guards: {}.", Guard::NAMES.join(", ")),
                    )
                })?;
                Value::from(Guard::parse_list(&names)?.iter().map(|g| g.name()).collect::<Vec<_>>())
            }
            "track_columns" => Value::from(value.as_bool().ok_or_else(|| {
                SyncError::new(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    "link setting \"track_columns\" must be true or false",
                    "Pass a JSON boolean.",
                )
            })?),
            _ => {
                link_settings::check(key, value)?;
                if let Some(url) = value.as_str().filter(|u| key == "batch_url" && u.contains("://")) {
                    check_allowed("batch_url", url)?;
                }
                if value.is_null() {
                    extra.remove(key);
                } else {
                    extra.insert(key.clone(), value.clone());
                }
                continue;
            }
        };
        columns.insert(key.clone(), normalized);
    }
    // The settings as they will be, parsed once as the worker will read them.
    let conf = LinkSettings::parse(&extra)?;
    let guards: Vec<String> = match columns.get("loop_guards") {
        Some(names) => serde_json::from_value(names.clone()).unwrap_or_default(),
        None => link.loop_guards.clone(),
    };
    link_settings::check_detector(&Guard::parse_list(&guards)?, &conf)?;

    let relid = link.relid();
    let tracking_now = columns.get("track_columns").and_then(Value::as_bool).unwrap_or(link.track_columns);
    if tracking_now && !link.track_columns {
        check_tracking_free(&TableInfo::load(relid)?, relid, Some(link.id))?;
    }
    if link.track_columns && !tracking_now {
        check_untracked_allowed(&TableInfo::load(relid)?)?;
        Spi::run_with_args("SELECT syncbridge._remove_columns($1)", &[link.id.into()])?;
    }
    Spi::run_with_args(
        "UPDATE syncbridge._link l SET \
             direction = coalesce($2->>'direction', direction), \
             contention = coalesce($2->>'contention', contention), \
             schedule = coalesce($2->>'schedule', schedule), \
             remote_base_url = coalesce($2->>'remote_base_url', remote_base_url), \
             remote_collection = coalesce($2->>'remote_collection', remote_collection), \
             remote_key_field = coalesce($2->>'remote_key_field', remote_key_field), \
             loop_guards = coalesce((SELECT array_agg(g) FROM jsonb_array_elements_text($2->'loop_guards') g), \
                                    CASE WHEN $2 ? 'loop_guards' THEN '{}'::text[] END, loop_guards), \
             track_columns = coalesce(($2->>'track_columns')::boolean, track_columns), \
             settings = $3 \
         WHERE id = $1",
        &[link.id.into(), JsonB(Value::Object(columns.clone())).into(), JsonB(Value::Object(extra)).into()],
    )?;
    // The settings may change the field rules (remote_id_column is not a synced field): the
    // link must keep a field to synchronise, or capture and delivery would refuse every row.
    link.field_map()?;
    if columns.contains_key("direction") || columns.contains_key("track_columns") {
        Spi::run_with_args("SELECT syncbridge._install_capture($1)", &[link.id.into()])?;
    }
    link.invalidate_capture();
    Ok(())
}

/// Drops a link: its capture triggers, its outbox entries and events and, unless
/// `keep_state`, its tracking columns and record state. With `keep_state` the id map and the
/// tracking columns stay, and a link created later with the same name on the same table takes
/// them up again (so it pairs records instead of creating duplicates).
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn drop_link(name: &str, keep_state: default!(bool, false)) {
    require_superuser("drop_link");
    drop_it(name, keep_state).or_raise()
}

fn drop_it(name: &str, keep_state: bool) -> Result<()> {
    let link = LinkRow::load_for_update(name)?;
    let id = link.id;
    Spi::run_with_args("SELECT syncbridge._remove_triggers($1)", &[id.into()])?;
    if keep_state {
        Spi::run_with_args(
            "INSERT INTO syncbridge._kept_record (link_name, table_name, record) \
             SELECT l.name, syncbridge._table_identity(l.local_table), to_jsonb(r) - 'link_id' FROM syncbridge._record r JOIN syncbridge._link l ON l.id = r.link_id WHERE r.link_id = $1",
            &[id.into()],
        )?;
    } else {
        Spi::run_with_args("SELECT syncbridge._remove_columns($1)", &[id.into()])?;
    }
    Spi::run_with_args("DELETE FROM syncbridge.outbox WHERE link_id = $1", &[id.into()])?;
    Spi::run_with_args("DELETE FROM syncbridge._event WHERE link_id = $1", &[id.into()])?;
    Spi::run_with_args("DELETE FROM syncbridge._link WHERE id = $1", &[id.into()])?;
    link.invalidate_capture();
    Ok(())
}

/// Stops delivering for a link; its edits are still captured and wait in the outbox.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn pause_link(name: &str) {
    require_superuser("pause_link");
    set_paused(name, true).or_raise()
}

/// Resumes a paused link; what queued up meanwhile is delivered.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn resume_link(name: &str) {
    require_superuser("resume_link");
    set_paused(name, false).or_raise()
}

fn set_paused(name: &str, paused: bool) -> Result<()> {
    let link = LinkRow::load_for_update(name)?;
    Spi::run_with_args("UPDATE syncbridge._link SET paused = $2 WHERE id = $1", &[link.id.into(), paused.into()])?;
    Ok(())
}

/// Sets the rule of one column of a link: its remote field name (NULL: the column name), its
/// owner for contention (`local`, `remote` or NULL), whether it is watched (a link that
/// watches fields sends an edit only when one of them changed), volatile (left out of
/// fingerprints), and whether it travels at all. Each call states the whole rule.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn set_field(
    link: &str,
    column_name: &str,
    remote_field: default!(Option<&str>, "NULL"),
    owner: default!(Option<&str>, "NULL"),
    watched: default!(bool, false),
    volatile: default!(bool, false),
    synced: default!(bool, true),
) {
    let rule = FieldRule {
        column: column_name.to_string(),
        remote_field: remote_field.map(str::to_string),
        owner: None,
        watched,
        volatile,
        synced,
    };
    require_superuser("set_field");
    set_rule(link, rule, owner).or_raise()
}

fn set_rule(link_name: &str, mut rule: FieldRule, owner: Option<&str>) -> Result<()> {
    let link = LinkRow::load_for_update(link_name)?;
    let table = TableInfo::load(link.relid())?;
    if !table.has_column(&rule.column) {
        return Err(table.no_column(&rule.column));
    }
    if mapping::is_reserved(&rule.column) {
        return Err(SyncError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("column \"{}\" is maintained by pg_syncbridge and never travels", rule.column),
            "Set rules for your own columns only.",
        ));
    }
    if rule.remote_field.as_deref() == Some("") {
        return Err(SyncError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "remote_field cannot be empty",
            "Pass NULL to keep the column's own name, or synced => false to keep the column local.",
        ));
    }
    rule.owner = owner.map(Side::parse).transpose()?;
    Spi::run_with_args(
        "INSERT INTO syncbridge._field (link_id, column_name, remote_field, owner, watched, volatile, synced) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (link_id, column_name) DO UPDATE SET remote_field = EXCLUDED.remote_field, owner = EXCLUDED.owner, \
             watched = EXCLUDED.watched, volatile = EXCLUDED.volatile, synced = EXCLUDED.synced",
        &[
            link.id.into(),
            rule.column.as_str().into(),
            rule.remote_field.as_deref().into(),
            owner.into(),
            rule.watched.into(),
            rule.volatile.into(),
            rule.synced.into(),
        ],
    )?;
    link.field_map()?;
    link.invalidate_capture();
    Ok(())
}

/// The fingerprint pg_syncbridge keeps for a record: blake3 of its canonical JSON (sorted
/// keys, normalised numbers, timestamps in UTC), leaving out the `volatile` top-level fields.
#[pg_extern(immutable, parallel_safe)]
fn fingerprint(record: JsonB, volatile: default!(Vec<String>, "'{}'")) -> String {
    crate::logic::fingerprint::of_record(&record.0, &volatile)
}

/// Managing links installs triggers and columns on tables and, later, reaches remote systems
/// with stored secrets: superusers only.
fn require_superuser(func: &str) {
    // SAFETY: superuser() looks up the current user's role (a syscache read), on the backend's main thread inside the
    // SQL call's transaction.
    if !unsafe { pg_sys::superuser() } {
        SyncError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for syncbridge.{func}"),
            "Managing links needs a superuser: they install triggers on tables and use stored secrets.",
        )
        .raise();
    }
}

/// A URL a link is given must point at a host of `syncbridge.allowed_hosts` when it lists
/// any (the worker checks again on every request and resolved address).
fn check_allowed(what: &str, url: &str) -> Result<()> {
    let list = AllowList::parse(&settings::allowed_hosts()).map_err(|e| {
        SyncError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            e,
            format!(
                "Fix {} in postgresql.conf and SELECT pg_reload_conf(); until then the worker sends nothing.",
                reach::SETTING
            ),
        )
    })?;
    let parsed = url::Url::parse(url).map_err(|e| {
        SyncError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid {what} \"{}\": {e}", link_spec::redact_url(url)),
            "Give an absolute http:// or https:// URL.",
        )
    })?;
    list.check_url(&parsed).map_err(|e| {
        SyncError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("{what}: {e}"),
            format!(
                "Links may only point at hosts listed in {}: use one of them, or have a superuser add this host in postgresql.conf and SELECT pg_reload_conf().",
                reach::SETTING
            ),
        )
    })
}

fn check_remote_key_field(field: &str) -> Result<()> {
    if field.trim().is_empty() {
        return Err(SyncError::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "remote_key_field cannot be empty",
            "Name the field that holds the remote record's id, usually 'id'.",
        ));
    }
    Ok(())
}

/// A link without tracking columns captures through statement triggers on the table, which
/// do not fire for writes made directly into a partition: such edits would be lost.
fn check_untracked_allowed(table: &TableInfo) -> Result<()> {
    if table.relkind == "p" {
        return Err(SyncError::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("\"{}\" is partitioned and needs track_columns", table.display),
            "Keep track_columns => true: its row trigger reaches every partition, also writes made directly into one.",
        ));
    }
    Ok(())
}

/// Only one link per table may keep `_sync_last_touch` and `_sync_fingerprint`, and columns
/// of those names must be text if they exist already.
fn check_tracking_free(table: &TableInfo, relid: pg_sys::Oid, except: Option<i64>) -> Result<()> {
    let other = crate::error::spi_opt::<String>(
        "SELECT name FROM syncbridge._link WHERE local_table = $1::regclass AND track_columns AND direction <> 'inbound' AND id IS DISTINCT FROM $2",
        &[relid.into(), except.into()],
    )?;
    if let Some(other) = other {
        return Err(SyncError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("link \"{other}\" already keeps the tracking columns of \"{}\"", table.display),
            "Only one link per table can track columns: pass track_columns => false.",
        ));
    }
    for col in table.columns.iter().filter(|c| mapping::is_reserved(&c.name)) {
        if col.type_name != "text" {
            return Err(SyncError::new(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!("column \"{}\" of \"{}\" exists with type {}", col.name, table.display, col.type_name),
                "pg_syncbridge keeps this column as text: drop or rename it, or pass track_columns => false.",
            ));
        }
    }
    Ok(())
}
