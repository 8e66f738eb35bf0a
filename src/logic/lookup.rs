//! Finding a record the remote may already hold before a create goes out again: the lookup
//! URL from the link's template (`lookup_query`), and what its answer says. A remote's
//! filter is not trusted: a record counts only if its local-id field holds our local id, and
//! an answer full of other records means the remote ignored the filter.

use super::delivery::{encode_component, id_text};
use serde_json::Value;

/// The placeholders of a lookup template.
pub const LOCAL_ID: &str = "{local_id}";
pub const LOCAL_ID_FIELD: &str = "{local_id_field}";
/// The template when the link sets none: json-server's and many REST APIs' filter.
pub const DEFAULT_TEMPLATE: &str = "{local_id_field}={local_id}";

/// `{base}/{collection}?{template}`, the placeholders replaced by the percent-encoded local-id
/// field and local id.
pub fn url(collection_url: &str, template: Option<&str>, field: &str, local_id: &str) -> String {
    let template = template.unwrap_or(DEFAULT_TEMPLATE).trim_start_matches('?');
    let query =
        template.replace(LOCAL_ID_FIELD, &encode_component(field)).replace(LOCAL_ID, &encode_component(local_id));
    let sep = if collection_url.contains('?') { '&' } else { '?' };
    format!("{collection_url}{sep}{query}")
}

/// Why a template is refused, if it is.
pub fn check_template(template: &str) -> Result<(), String> {
    if !template.contains(LOCAL_ID) {
        return Err(format!("it must contain {LOCAL_ID}, where the local id goes"));
    }
    if template.contains('#') || template.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it must be a query string without spaces, control characters or '#'".into());
    }
    Ok(())
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No record carries the local id: the create may go out.
    Nothing,
    /// The one record that carries it (its remote id).
    One(String),
    /// Several records carry it (their remote ids, in the answer's order): a duplicate.
    Several(Vec<String>),
    /// Records came back, none with our local id: the remote ignored the filter.
    IgnoredFilter { others: usize },
    /// The answer holds no list where the link says.
    NoList,
}

/// Reads a lookup's 2xx answer body: the records at `list_pointer` (an empty pointer: the
/// body is the array), those whose `field` equals `local_id`.
pub fn read(body: &str, list_pointer: &str, field: &str, remote_key_field: &str, local_id: &str) -> Found {
    let Ok(body) = serde_json::from_str::<Value>(body) else { return Found::NoList };
    let items = match (&body, list_pointer) {
        (Value::Array(items), "") => items,
        (other, pointer) => match other.pointer(pointer) {
            Some(Value::Array(items)) => items,
            _ => return Found::NoList,
        },
    };
    let ours: Vec<String> = items
        .iter()
        .filter(|item| item.get(field).and_then(id_text).as_deref() == Some(local_id))
        .filter_map(|item| item.get(remote_key_field).and_then(id_text))
        .collect();
    match ours.len() {
        0 if items.is_empty() => Found::Nothing,
        0 => Found::IgnoredFilter { others: items.len() },
        1 => Found::One(ours.into_iter().next().expect("one")),
        _ => Found::Several(ours),
    }
}

/// The reason a record fails when the remote ignored the lookup's filter.
pub fn ignored_filter_reason(template: Option<&str>, others: usize) -> String {
    let template = template.unwrap_or(DEFAULT_TEMPLATE);
    format!(
        "the create may have reached the remote, but the remote ignored the lookup filter \"{template}\" \
         ({others} other records came back): not created again; set the link's lookup_query to the remote's \
         filter syntax (such as \"filter[ref]={LOCAL_ID}\"), then retry_failed"
    )
}

/// The reason a record fails when several remote records carry its local id.
pub fn duplicates_reason(local_id: &str, remote_ids: &[String]) -> String {
    format!(
        "duplicate: remote records {} carry local id {local_id}; not paired (see syncbridge.duplicates): \
         delete the extra ones remotely, then retry_failed",
        remote_ids.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_takes_the_remotes_syntax() {
        assert_eq!(url("http://h/c", None, "local id", "a&b"), "http://h/c?local%20id=a%26b");
        assert_eq!(
            url("http://h/c", Some("?filter[ref]={local_id}&per=5"), "ref", "7"),
            "http://h/c?filter[ref]=7&per=5"
        );
        assert_eq!(url("http://h/c?x=1", Some("q={local_id}"), "f", "7"), "http://h/c?x=1&q=7");
        assert!(check_template("filter[ref]={local_id}").is_ok());
        assert!(check_template(DEFAULT_TEMPLATE).is_ok());
        assert!(check_template("filter[ref]=1").unwrap_err().contains("{local_id}"));
        assert!(check_template("a={local_id}#x").is_err());
        assert!(check_template("a = {local_id}").is_err());
    }

    #[test]
    fn only_records_with_our_local_id_count() {
        let read = |body: &str, ptr: &str| read(body, ptr, "ref", "id", "5");
        assert_eq!(read("[]", ""), Found::Nothing);
        assert_eq!(read(r#"{"data": []}"#, "/data"), Found::Nothing);
        assert_eq!(read(r#"[{"id": 9, "ref": 5}]"#, ""), Found::One("9".into()));
        assert_eq!(read(r#"[{"id": "x", "ref": "5"}, {"id": 2, "ref": 6}]"#, ""), Found::One("x".into()));
        assert_eq!(
            read(r#"{"data": [{"id": 1, "ref": 1}, {"id": 2, "ref": 2}]}"#, "/data"),
            Found::IgnoredFilter { others: 2 }
        );
        assert_eq!(
            read(r#"[{"id": 9, "ref": 5}, {"id": 10, "ref": 5}]"#, ""),
            Found::Several(vec!["9".into(), "10".into()])
        );
        assert_eq!(read("not json", ""), Found::NoList);
        assert_eq!(read(r#"{"data": {}}"#, "/data"), Found::NoList);
        assert_eq!(read(r#"{"data": []}"#, ""), Found::NoList);
    }

    #[test]
    fn reasons_say_what_to_do() {
        assert!(ignored_filter_reason(None, 20).contains("lookup_query"));
        assert!(duplicates_reason("5", &["9".into(), "10".into()]).contains("9, 10 carry local id 5"));
    }
}
