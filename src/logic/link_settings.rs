//! A link's settings — what `alter_link` accepts beside the columns of `create_link` — as one
//! typed struct, parsed and validated once (by `alter_link`, and when a link is loaded), with
//! every default in one place. The table [`SETTINGS`] is the one source of each setting's
//! type, default and meaning: `alter_link` checks values against it, and the settings table
//! of docs/reference.md is [`reference_table`] (a test keeps them equal).

use super::link_spec::{ErrorKind, Guard, SpecError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The value a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingType {
    PositiveInt,
    Text,
    Bool,
    /// A JSON pointer (RFC 6901): empty, or starting with `/`.
    Pointer,
    OneOf(&'static [&'static str]),
    /// An HTTP header name (a token: no spaces, colons, CR or LF).
    HeaderName,
    /// A path below the base URL, or an absolute http(s) URL checked like the base URL.
    Url,
    /// A query string with placeholders (`{local_id}`, `{local_id_field}`).
    Query,
}

/// One setting: its name, type, default (as the docs show it) and meaning.
#[derive(Debug, Clone, Copy)]
pub struct SettingDoc {
    pub name: &'static str,
    pub kind: SettingType,
    pub default: &'static str,
    pub meaning: &'static str,
}

const fn s(name: &'static str, kind: SettingType, default: &'static str, meaning: &'static str) -> SettingDoc {
    SettingDoc { name, kind, default, meaning }
}

use SettingType::*;

/// Every link setting, in the order the reference shows them (and `alter_link`'s hint lists
/// them). Defaults here must be the
/// struct's (`link_settings::tests` checks both ways).
pub const SETTINGS: &[SettingDoc] = &[
    s("timeout_ms", PositiveInt, "10000", "HTTP timeout per request, in milliseconds"),
    s("batch_size", PositiveInt, "`syncbridge.batch_size`", "records per round"),
    s("max_attempts", PositiveInt, "8", "attempts before a record is dead-lettered for its own failures (attempts made while the link is unavailable do not count)"),
    s("outage_budget", PositiveInt, "21600", "seconds a link may be unavailable (its remote answers none of its requests) before records that fail for the outage are dead-lettered"),
    s("outage_probe_max", PositiveInt, "60", "longest wait, in seconds, between two probes of an unavailable link"),
    s("auth_header", HeaderName, "`Authorization`", "header that carries the secret"),
    s("auth_secret", Text, "none", "name of the secret (`set_secret`) sent as the value of `auth_header`"),
    s("created_id_pointer", Pointer, "the remote key field", "JSON pointer to the id in a create's answer"),
    s("list_pointer", Pointer, "the whole body", "JSON pointer to the records in a page"),
    s("batch_url", Url, "none", "batch mode: all records of a round in one POST to this URL, a path below the base URL (`batch`) or an absolute http(s) URL checked like the base URL (no credentials, other schemes or bad ports) and against `syncbridge.allowed_hosts`"),
    s("local_id_field", Text, "none", "remote field that holds the local id (writebacks, and lookups before a repeated create)"),
    s("lookup_query", Query, "`{local_id_field}={local_id}`", "query of the lookup `GET {collection}?…` made before a create that may have reached the remote, in the remote's own filter syntax (such as `filter[ref]={local_id}`); `{local_id}` is replaced by the local id, `{local_id_field}` by `local_id_field`. A record counts only if its `local_id_field` holds the local id; an answer with records but none of ours (the remote ignored the filter) fails the record instead of creating it again"),
    s("remote_time_field", Text, "none", "remote modification time, for `newer_wins` and `merge`"),
    s("local_time_column", Text, "none", "local modification time, for `newer_wins` and `merge`"),
    s("deletes", OneOf(&["delete", "soft_delete", "ignore"]), "`delete`", "what an inbound tombstone does"),
    s("soft_delete_column", Text, "none", "column a soft delete marks (true, or the time)"),
    s("tombstone_field", Text, "`_deleted`", "field that marks a record deleted"),
    s("unknown_fields", OneOf(&["ignore", "fail"]), "`ignore`", "inbound fields without a column"),
    s("pull_path", Text, "the collection", "path of the pull, below the base URL"),
    s("cursor_param", Text, "none", "query parameter that carries the cursor"),
    s("cursor_field", Text, "none", "record field whose newest value becomes the cursor"),
    s("pull_query", Text, "none", "fixed query text of the pull, such as `_page=1&_limit=500`"),
    s("next_pointer", Text, "none", "JSON pointer to the next page's URL in a page (else the `Link: rel=\"next\"` header); a next link is resolved against its page's URL and must stay on its origin (one to another origin ends the pull with an error that names it, after the pages read are applied); a page already read in the same pull ends it"),
    s("max_pages", PositiveInt, "1000", "pages one pull reads at most"),
    s("pull", Bool, "true", "inbound pull on or off"),
    s("pull_interval", PositiveInt, "10", "seconds between pulls of a realtime link (a scheduled link pulls on its schedule)"),
    s("update_method", OneOf(&["PATCH", "PUT"]), "`PATCH`", "how an update is sent; an update carries only the fields changed since the last sync, so a `PUT` (which replaces the whole record) reads the record first and sends it with those fields changed"),
    s("before_update", OneOf(&["pull", "read", "if_match", "none"]), "`pull` on a link that receives by pulling, else `none`", "how remote changes are seen before an outbound update could overwrite them: `pull` pulls before each outbound round that has work (one request a round); `read` reads each record before updating it (one `GET` an update): a record the remote changed since the last sync is applied first, contention settles every field (a row in `syncbridge.conflicts` for each edit that loses), and the update then carries what won; `if_match` sends each update with `If-Match` and the version (`ETag`) the remote's last answer gave (a record whose version is not known yet is read first, as `read` does): a `412` makes it read the record and go on as `read`; `none` sends at once: an update still carries only the fields changed since the last sync, but a field both sides changed in the meantime takes the local value with no conflict row. A link that does not receive (`direction` `outbound`) always sends at once"),
    s("empty_update_answer", OneOf(&["delivered", "gone"]), "`delivered`", "what a 2xx answer with no record (a 204, an empty body) to an update means: `delivered` (its event says the remote answered with no record), or `gone`: the remote record was deleted, as a 404 to an update says, and the link's `deletes` policy applies"),
    s("remote_id_column", Text, "none", "local column that holds a record's remote id: written when a record the link sent is created on the remote, and in the insert of a row an inbound record creates; it is not sent or received as a field (the remote has its own id), unless `set_field` marks it synced"),
    s("concurrency", PositiveInt, "8", "requests of the link on the network at once, at most (1 to 64), whichever of its batches (up to two travel at once) they belong to"),
    s("max_response_bytes", PositiveInt, "8388608", "larger answers are refused"),
    s("batch_result_pointer", Pointer, "the whole body", "batch mode: JSON pointer to the per-record results, in order"),
    s("detector", Bool, "true", "the runtime loop detector runs unless this is false (listing the `detector` guard says the same as true)"),
    s("detector_hops", PositiveInt, "6", "hops within the window that quarantine a record"),
    s("detector_window", PositiveInt, "600", "the detector's window, in seconds"),
    s("webhook_secret", Text, "none", "name of the secret (`set_secret`) that webhooks to the listener (`syncbridge.listen`) must prove they know; without it the link takes no webhooks"),
    s("webhook_auth", OneOf(&["bearer", "hmac"]), "`bearer`", "how a webhook proves it: `bearer` (`Authorization: Bearer <secret>`) or `hmac` (the hex HMAC-SHA256 of the raw body, keyed with the secret, in `webhook_signature_header`)"),
    s("webhook_signature_header", HeaderName, "`X-Signature`", "header of the HMAC signature"),
    s("webhook_signature_prefix", Text, "none", "text before the hex signature in its header, such as `sha256=`"),
    s("webhook_timestamp_header", HeaderName, "none", "header of a signed timestamp (Unix seconds): the signature is then of `{timestamp}.{body}`, and a timestamp further than `webhook_tolerance` from now is refused"),
    s("webhook_tolerance", PositiveInt, "300", "replay window of a signed timestamp, in seconds"),
];

/// A link's settings, every default filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkSettings {
    pub timeout_ms: u64,
    /// `None`: the server's `syncbridge.batch_size`.
    pub batch_size: Option<u64>,
    pub max_attempts: u64,
    pub outage_budget: u64,
    pub outage_probe_max: u64,
    pub concurrency: u64,
    pub max_response_bytes: u64,
    pub auth_secret: Option<String>,
    pub auth_header: String,
    /// `None`: the link's remote key field.
    pub created_id_pointer: Option<String>,
    pub update_method: String,
    /// `pull`, `read` or `none`; `None`: [`LinkSettings::before_update`] decides by direction.
    pub before_update: Option<String>,
    /// `delivered` or `gone`: what a 2xx with no record to an update means.
    pub empty_update_answer: String,
    pub batch_url: Option<String>,
    pub batch_result_pointer: String,
    pub local_id_field: Option<String>,
    /// `None`: `logic::lookup::DEFAULT_TEMPLATE`.
    pub lookup_query: Option<String>,
    pub remote_id_column: Option<String>,
    pub pull: bool,
    pub pull_interval: u64,
    /// `None`: the collection.
    pub pull_path: Option<String>,
    pub pull_query: Option<String>,
    pub cursor_param: Option<String>,
    pub cursor_field: Option<String>,
    pub list_pointer: String,
    pub next_pointer: Option<String>,
    pub max_pages: u64,
    pub remote_time_field: Option<String>,
    pub local_time_column: Option<String>,
    pub deletes: String,
    pub soft_delete_column: Option<String>,
    pub tombstone_field: String,
    pub unknown_fields: String,
    pub detector: bool,
    pub detector_hops: u64,
    pub detector_window: u64,
    pub webhook_secret: Option<String>,
    /// `bearer` or `hmac`.
    pub webhook_auth: String,
    pub webhook_signature_header: String,
    pub webhook_signature_prefix: Option<String>,
    pub webhook_timestamp_header: Option<String>,
    pub webhook_tolerance: u64,
}

/// How remote changes are seen before an outbound update (`before_update`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeforeUpdate {
    /// A pull before each outbound round that has work.
    Pull,
    /// A `GET` of each record before its update.
    Read,
    /// Each update conditional on the version last seen (`If-Match`); a `412` reads the record.
    IfMatch,
    /// Nothing: the update goes at once.
    Nothing,
}

impl LinkSettings {
    /// The link's `before_update`; unset: `pull` on a link that receives by pulling, else
    /// nothing (an outbound-only link never applies the remote's version).
    pub fn before_update(&self, receives: bool) -> BeforeUpdate {
        match (self.before_update.as_deref(), receives) {
            (_, false) | (Some("none"), _) => BeforeUpdate::Nothing,
            (Some("read"), true) => BeforeUpdate::Read,
            (Some("if_match"), true) => BeforeUpdate::IfMatch,
            (Some(_), true) => BeforeUpdate::Pull,
            (None, true) if self.pull => BeforeUpdate::Pull,
            (None, true) => BeforeUpdate::Nothing,
        }
    }
}

impl Default for LinkSettings {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            batch_size: None,
            max_attempts: 8,
            outage_budget: 6 * 3600,
            outage_probe_max: 60,
            concurrency: 8,
            max_response_bytes: 8 << 20,
            auth_secret: None,
            auth_header: "Authorization".into(),
            created_id_pointer: None,
            update_method: "PATCH".into(),
            before_update: None,
            empty_update_answer: "delivered".into(),
            batch_url: None,
            batch_result_pointer: String::new(),
            local_id_field: None,
            lookup_query: None,
            remote_id_column: None,
            pull: true,
            pull_interval: 10,
            pull_path: None,
            pull_query: None,
            cursor_param: None,
            cursor_field: None,
            list_pointer: String::new(),
            next_pointer: None,
            max_pages: 1000,
            remote_time_field: None,
            local_time_column: None,
            deletes: "delete".into(),
            soft_delete_column: None,
            tombstone_field: "_deleted".into(),
            unknown_fields: "ignore".into(),
            detector: true,
            detector_hops: 6,
            detector_window: 600,
            webhook_secret: None,
            webhook_auth: "bearer".into(),
            webhook_signature_header: "X-Signature".into(),
            webhook_signature_prefix: None,
            webhook_timestamp_header: None,
            webhook_tolerance: 300,
        }
    }
}

impl LinkSettings {
    /// Parses stored or given settings (name → value; a null value means unset). Each value is
    /// checked against [`SETTINGS`], so an unknown name or a wrong type is refused with what
    /// the setting takes.
    pub fn parse(settings: &Map<String, Value>) -> Result<Self, SpecError> {
        for (key, value) in settings {
            check(key, value)?;
        }
        let given: Map<String, Value> =
            settings.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
        serde_json::from_value(Value::Object(given)).map_err(|e| {
            SpecError::new(
                ErrorKind::InvalidValue,
                format!("invalid link settings: {e}"),
                "Check the values against the settings table of docs/reference.md.",
            )
        })
    }

    /// Whether the runtime loop detector runs: one meaning for the `detector` guard and
    /// setting (see [`check_detector`]).
    pub fn detector_on(&self) -> bool {
        self.detector
    }
}

/// The `detector` guard and the `detector` setting say one thing: the detector runs unless
/// the setting is false. A link that lists the guard and sets it false contradicts itself.
pub fn check_detector(guards: &[Guard], settings: &LinkSettings) -> Result<(), SpecError> {
    if guards.contains(&Guard::Detector) && !settings.detector {
        return Err(SpecError::new(
            ErrorKind::InvalidValue,
            "the link lists the detector guard but sets \"detector\" to false",
            "The detector runs unless \"detector\" is false; remove the guard from loop_guards, or set \"detector\" to null.",
        ));
    }
    Ok(())
}

/// Checks one setting's value; null (unset) always passes.
pub fn check(key: &str, value: &Value) -> Result<(), SpecError> {
    let Some(doc) = SETTINGS.iter().find(|d| d.name == key) else {
        let mut names: Vec<&str> = super::link_spec::CORE_SETTINGS.to_vec();
        names.extend(SETTINGS.iter().map(|d| d.name));
        return Err(SpecError::new(
            ErrorKind::InvalidValue,
            format!("unknown link setting \"{key}\""),
            format!("Valid values: {}.", names.join(", ")),
        ));
    };
    if value.is_null() {
        return Ok(());
    }
    match (doc.kind, value.as_str().filter(|s| !s.is_empty())) {
        (HeaderName, Some(name)) => return super::link_spec::check_header_name(key, name),
        (Url, Some(url)) => return super::link_spec::check_batch_url(url),
        (Query, Some(template)) => {
            return super::lookup::check_template(template).map_err(|why| {
                SpecError::new(
                    ErrorKind::InvalidValue,
                    format!("invalid value {value} for link setting \"{key}\": {why}"),
                    format!(
                        "\"{key}\" takes a query string such as \"filter[ref]={{local_id}}\", or null for the default."
                    ),
                )
            })
        }
        _ => {}
    }
    let ok = match doc.kind {
        PositiveInt => value.as_i64().is_some_and(|n| n > 0),
        Text => value.as_str().is_some_and(|s| !s.is_empty()),
        Bool => value.is_boolean(),
        Pointer => value.as_str().is_some_and(|s| s.is_empty() || s.starts_with('/')),
        OneOf(names) => value.as_str().is_some_and(|s| names.contains(&s)),
        HeaderName | Url | Query => false,
    };
    if ok {
        return Ok(());
    }
    let want = match doc.kind {
        PositiveInt => "a positive whole number".to_string(),
        Text | HeaderName | Url | Query => "a non-empty string".to_string(),
        Bool => "true or false".to_string(),
        Pointer => "a JSON pointer such as \"/data/id\", or \"\" for the whole body".to_string(),
        OneOf(names) => format!("one of {}", names.join(", ")),
    };
    Err(SpecError::new(
        ErrorKind::InvalidValue,
        format!("invalid value {value} for link setting \"{key}\""),
        format!("\"{key}\" takes {want}, or null to remove it."),
    ))
}

/// The settings table of docs/reference.md, as Markdown.
pub fn reference_table() -> String {
    let mut out = String::from("| setting | takes | default | meaning |\n|---|---|---|---|\n");
    for d in SETTINGS {
        let takes = match d.kind {
            PositiveInt => "number > 0".to_string(),
            Text => "text".to_string(),
            HeaderName => "header name".to_string(),
            Url => "path or URL".to_string(),
            Query => "query template".to_string(),
            Bool => "boolean".to_string(),
            Pointer => "JSON pointer".to_string(),
            OneOf(names) => names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
        };
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", d.name, takes, d.default, d.meaning));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_and_the_struct_name_the_same_settings() {
        let fields: Vec<String> = match serde_json::to_value(LinkSettings::default()).unwrap() {
            Value::Object(m) => m.keys().cloned().collect(),
            _ => unreachable!(),
        };
        let mut documented: Vec<String> = SETTINGS.iter().map(|d| d.name.to_string()).collect();
        documented.sort();
        let mut fields = fields;
        fields.sort();
        assert_eq!(fields, documented);
    }

    #[test]
    fn documented_defaults_are_the_structs() {
        let d = serde_json::to_value(LinkSettings::default()).unwrap();
        for doc in SETTINGS {
            let value = &d[doc.name];
            let shown = doc.default.trim_matches('`');
            match value {
                // Unset by default: the docs say what stands in.
                Value::Null => assert!(!shown.chars().all(|c| c.is_ascii_digit()), "{}: {shown}", doc.name),
                Value::String(s) if s.is_empty() => assert_eq!(shown, "the whole body", "{}", doc.name),
                Value::String(s) => assert_eq!(shown, s, "{}", doc.name),
                other => assert_eq!(shown, other.to_string(), "{}", doc.name),
            }
        }
    }

    #[test]
    fn docs_reference_shows_the_table() {
        let reference = include_str!("../../docs/reference.md");
        assert!(
            reference.contains(&reference_table()),
            "docs/reference.md's settings table differs from logic::link_settings::reference_table(); paste it in:\n{}",
            reference_table()
        );
    }

    #[test]
    fn parse_fills_defaults_and_takes_values() {
        let s = LinkSettings::parse(&Map::new()).unwrap();
        assert_eq!(s, LinkSettings::default());
        let given = json!({"timeout_ms": 5000, "pull": false, "auth_secret": "t", "max_pages": null});
        let s = LinkSettings::parse(given.as_object().unwrap()).unwrap();
        assert_eq!((s.timeout_ms, s.pull, s.auth_secret.as_deref(), s.max_pages), (5000, false, Some("t"), 1000));
    }

    #[test]
    fn every_value_is_checked() {
        assert!(check("timeout_ms", &json!(5000)).is_ok());
        assert!(check("timeout_ms", &json!(null)).is_ok());
        assert!(check("timeout_ms", &json!(-1)).is_err());
        assert!(check("timeout_ms", &json!("5s")).is_err());
        assert!(check("deletes", &json!("soft_delete")).is_ok());
        assert!(check("lookup_query", &json!("filter[ref]={local_id}")).is_ok());
        let err = check("lookup_query", &json!("filter[ref]=1")).unwrap_err();
        assert!(err.message.contains("{local_id}") && err.hint.contains("filter[ref]"), "{err:?}");
        let err = check("deletes", &json!("purge")).unwrap_err();
        assert!(err.hint.contains("delete, soft_delete, ignore"), "{}", err.hint);
        let err = check("timeout", &json!(1)).unwrap_err();
        assert!(err.message.contains("unknown link setting"), "{}", err.message);
        let err = LinkSettings::parse(json!({"pull": "yes"}).as_object().unwrap()).unwrap_err();
        assert!(err.message.contains("\"pull\""), "{}", err.message);
    }

    #[test]
    fn the_detector_guard_and_setting_cannot_disagree() {
        let off = LinkSettings { detector: false, ..LinkSettings::default() };
        assert!(check_detector(&[Guard::Detector], &off).is_err());
        assert!(check_detector(&[Guard::Echo], &off).is_ok());
        assert!(check_detector(&[Guard::Detector], &LinkSettings::default()).is_ok());
        assert!(!off.detector_on());
    }
}
