//! A link's fields: the table's live columns and the stored field rules, made into the field
//! map in one place (`logic::mapping::FieldMap::build` decides; this reads its inputs).

use super::table::TableInfo;
use crate::error::Result;
use crate::logic::link_spec::Side;
use crate::logic::mapping::{Coerce, Column, FieldMap, FieldRule};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

/// The field map of a table with these rules and key column.
pub fn field_map(table: &TableInfo, rules: &[FieldRule], key_column: &str) -> Result<FieldMap> {
    Ok(FieldMap::build(&columns_of(table), rules, key_column)?)
}

/// The field map of a link now: its table as it is, and its stored rules.
pub fn link_field_map(relid: pg_sys::Oid, link_id: i64, key_column: &str) -> Result<FieldMap> {
    field_map(&TableInfo::load(relid)?, &stored_rules(link_id)?, key_column)
}

/// The field rules of a link (view `syncbridge._field_rule`: those set with `set_field`, and
/// the remote-id column's, which is not synced).
pub fn stored_rules(link_id: i64) -> Result<Vec<FieldRule>> {
    let rows = Spi::get_one_with_args::<JsonB>(
        "SELECT coalesce(jsonb_agg(to_jsonb(f)), '[]') FROM syncbridge._field_rule f WHERE link_id = $1",
        &[link_id.into()],
    )?
    .map(|j| j.0)
    .unwrap_or(Value::Null);
    let mut rules = Vec::new();
    for r in rows.as_array().into_iter().flatten() {
        rules.push(FieldRule {
            column: r["column_name"].as_str().unwrap_or_default().to_string(),
            remote_field: r["remote_field"].as_str().map(str::to_string),
            owner: r["owner"].as_str().map(Side::parse).transpose()?,
            watched: r["watched"].as_bool().unwrap_or(false),
            volatile: r["volatile"].as_bool().unwrap_or(false),
            synced: r["synced"].as_bool().unwrap_or(true),
        });
    }
    Ok(rules)
}

/// The live columns of a table, with their attribute numbers.
pub fn columns_of(table: &TableInfo) -> Vec<Column> {
    table
        .columns
        .iter()
        .map(|c| Column {
            name: c.name.clone(),
            attnum: c.attnum,
            not_null: c.not_null,
            coerce: Coerce::of_type(&c.type_name),
        })
        .collect()
}
