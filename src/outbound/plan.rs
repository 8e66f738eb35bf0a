//! What travels: deliveries and the link's HTTP conventions, as plain data shared by the
//! claim (SPI), send (async) and settle (SPI) steps.

use crate::catalog::link::LinkRow;
use crate::logic::delivery::{self, Answer};
use crate::logic::link_settings::BeforeUpdate;
use crate::logic::link_spec::Direction;
use crate::transport::http::Method;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// One record on its way to the remote.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub local_key: String,
    /// The `_pending` version this delivery carries.
    pub seq: i64,
    pub attempt: u32,
    pub remote_key: Option<String>,
    pub action: Action,
    /// Why it travels: create, update, delete, reflect (fields the local write added) or
    /// writeback (the local id, for the remote); shown in its event.
    pub purpose: &'static str,
    pub body: Option<Map<String, Value>>,
    /// Fingerprint and base snapshot of the whole record as sent (not for deletes).
    pub fingerprint: Option<String>,
    pub base: Option<Map<String, Value>>,
    /// An earlier create of this record may have reached the remote (`_pending.create_sent_at`):
    /// look it up first.
    pub lookup: bool,
    /// The body holds some fields only (those changed since the base, a reflection, a
    /// writeback): a `PUT` reads the record first and sends it whole.
    pub partial: bool,
    /// The base snapshot before this delivery (the version both sides last agreed on), which
    /// a read before the update compares the remote record with.
    pub agreed: Option<Map<String, Value>>,
    /// The remote record's version from its last answer (`ETag`), for `If-Match`.
    pub etag: Option<String>,
    /// The loop detector's hop times to keep once delivered.
    pub hops: Option<Vec<i64>>,
}

/// A delivery and the remote's answer.
#[derive(Debug, Clone)]
pub struct Sent {
    pub delivery: Delivery,
    pub answer: Answer,
    /// The remote id found by a lookup before a repeated create.
    pub found_id: Option<String>,
    pub method: &'static str,
    /// The remote records the lookup found carrying this record's local id, when several did.
    pub duplicates: Vec<String>,
    /// Not sent: the read before the update found the remote record changed since the base.
    /// This is the record as read, to be applied (and settled by contention) first.
    pub seen: Option<Map<String, Value>>,
}

/// A link's HTTP conventions (SPEC §5), read from its settings.
#[derive(Debug, Clone)]
pub struct Conventions {
    pub link: String,
    pub base_url: String,
    pub collection: String,
    pub remote_key_field: String,
    pub created_id_pointer: String,
    pub local_id_field: Option<String>,
    /// The lookup's query template (`lookup_query`); `None`: `logic::lookup::DEFAULT_TEMPLATE`.
    pub lookup_query: Option<String>,
    pub update_method: Method,
    /// Auth and other fixed headers (values from the secret store; never logged).
    pub headers: Vec<(String, String)>,
    /// Batch mode: every delivery of a batch in one POST to this URL.
    pub batch_url: Option<String>,
    pub batch_result_pointer: String,
    /// Where a list response holds its records ("" = the body is the array).
    pub list_pointer: String,
    pub concurrency: usize,
    /// `before_update` = `read`: each update reads its record first.
    pub read_first: bool,
    /// `before_update` = `if_match`: each update is conditional on the version last seen.
    pub if_match: bool,
    /// Where a single record's answer holds the record: the parent of `created_id_pointer`
    /// (`/data` for `/data/id`), or the whole body.
    pub record_pointer: String,
    pub timeout_ms: u64,
    pub max_response_bytes: usize,
}

impl Conventions {
    pub fn of(link: &LinkRow, secret: Option<String>) -> Self {
        let conf = &link.conf;
        let mode = conf.before_update(Direction::parse(&link.direction).is_ok_and(|d| d.receives()));
        let mut headers = Vec::new();
        if let Some(value) = secret {
            headers.push((conf.auth_header.clone(), value));
        }
        let batch_url = conf.batch_url.as_deref().map(|u| {
            if u.starts_with("http://") || u.starts_with("https://") {
                u.to_string()
            } else {
                format!("{}/{}", link.remote_base_url, u.trim_start_matches('/'))
            }
        });
        Self {
            link: link.name.clone(),
            base_url: link.remote_base_url.clone(),
            collection: link.remote_collection.clone(),
            remote_key_field: link.remote_key_field.clone(),
            created_id_pointer: conf.created_id_pointer.clone().unwrap_or_default(),
            local_id_field: conf.local_id_field.clone(),
            lookup_query: conf.lookup_query.clone(),
            update_method: Method::parse(&conf.update_method).unwrap_or(Method::Patch),
            headers,
            batch_url,
            batch_result_pointer: conf.batch_result_pointer.clone(),
            list_pointer: conf.list_pointer.clone(),
            concurrency: conf.concurrency.clamp(1, 64) as usize,
            read_first: mode == BeforeUpdate::Read,
            if_match: mode == BeforeUpdate::IfMatch,
            record_pointer: conf
                .created_id_pointer
                .as_deref()
                .and_then(|p| p.rsplit_once('/'))
                .map(|(parent, _)| parent.to_string())
                .unwrap_or_default(),
            timeout_ms: conf.timeout_ms,
            max_response_bytes: conf.max_response_bytes as usize,
        }
    }

    /// Batch mode: every delivery in one POST.
    pub fn batch(&self) -> bool {
        self.batch_url.is_some()
    }

    pub fn record_url(&self, id: Option<&str>) -> String {
        delivery::record_url(&self.base_url, &self.collection, id)
    }

    /// The idempotency key of a delivery: stable across retries of the same version.
    pub fn idempotency_key(&self, d: &Delivery) -> String {
        format!("syncbridge-{}-{}-{}", self.link, d.local_key, d.seq)
    }
}
