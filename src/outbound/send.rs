//! Sending a batch of deliveries (async, on the transport runtime; no PostgreSQL here).
//!
//! Per-record mode: `POST {base}/{collection}` to create, `PATCH` (or `PUT`)
//! `{base}/{collection}/{id}` to update, `DELETE` to delete. A link has at most `concurrency`
//! requests on the network at once, whichever of its batches they belong to (`permits`).
//! Every request carries an `Idempotency-Key`. A create that went out before (its answer
//! may have been lost) is first looked up (`GET {collection}?{lookup_query}`), in both modes,
//! and updates the record found instead of creating a second one; a lookup that cannot tell
//! (the remote ignored the filter, several records carry the local id, the lookup itself
//! failed) stops the create and stands as the record's answer.
//!
//! Batch mode: one `POST {batch_url}` with an array of `{op, id, local_key, record}`; the
//! answer holds one result per record, in order (`status`, the created id, `error`).

use super::plan::{Action, Conventions, Delivery, Sent};
use crate::logic::contention::same;
use crate::logic::delivery::Answer;
use crate::logic::lookup::{self, Found};
use crate::transport::http::{Client, Method, Request};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tracing::Instrument;

pub async fn send(
    client: Client,
    conv: Arc<Conventions>,
    permits: Arc<Semaphore>,
    deliveries: Vec<Delivery>,
) -> Vec<Sent> {
    if conv.batch_url.is_some() {
        let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
        return send_batch(&client, &conv, deliveries).await;
    }
    let mut tasks = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let (client, conv, permits) = (client.clone(), conv.clone(), permits.clone());
        // In the batch's span, like the batch itself.
        tasks.push(tokio::spawn(
            async move {
                let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
                send_one(&client, &conv, d).await
            }
            .in_current_span(),
        ));
    }
    let mut sent = Vec::with_capacity(tasks.len());
    for t in tasks {
        sent.push(t.await.expect("a delivery task does not panic"));
    }
    sent
}

async fn send_one(client: &Client, conv: &Conventions, d: Delivery) -> Sent {
    let found_id = match look_up_first(client, conv, &d).await {
        Ok(found) => found,
        Err(stopped) => return stopped,
    };
    let (current, mut version) = match read_first(client, conv, &d).await {
        Ok(Some((record, etag))) => (Some(record), etag),
        Ok(None) => (None, d.etag.clone()),
        Err(stopped) => return stopped,
    };
    let (method, url) = match (d.action, found_id.as_deref().or(d.remote_key.as_deref())) {
        (Action::Create, None) => (Method::Post, conv.record_url(None)),
        (Action::Create | Action::Update, Some(id)) => (conv.update_method, conv.record_url(Some(id))),
        (Action::Delete, id) => (Method::Delete, conv.record_url(id)),
        (Action::Update, None) => unreachable!("an update has a remote key"),
    };
    let mut req = request(conv, method, url, &d);
    if let Some(body) = &d.body {
        if d.action != Action::Delete {
            // A PUT replaces the record: the fields this update changes over the record as read.
            let whole = match current {
                Some(mut record) if method == Method::Put => {
                    record.extend(body.clone());
                    record
                }
                _ => body.clone(),
            };
            req.body = Some(Value::Object(whole).to_string());
        }
    }
    let conditional = conv.if_match && d.action == Action::Update && found_id.is_none();
    let mut answer = send_if_match(client, &mut req, conditional.then_some(version.as_deref()).flatten()).await;
    if conditional && answer.status == Some(412) {
        // Changed since the version we knew: read it, as `read` would, and try once more if
        // none of the synced fields changed (the remote's version moved for its own reasons).
        match read_record(client, conv, &d, true).await {
            Ok((_, etag)) => {
                version = etag;
                answer = send_if_match(client, &mut req, version.as_deref()).await;
            }
            Err(stopped) => return stopped,
        }
    }
    Sent { delivery: d, answer, found_id, method: method.name(), duplicates: Vec::new(), seen: None }
}

/// Sends `req`, with `If-Match: version` when there is one.
async fn send_if_match(client: &Client, req: &mut Request, version: Option<&str>) -> Answer {
    req.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("If-Match"));
    if let Some(v) = version {
        req.headers.push(("If-Match".into(), v.to_string()));
    }
    client.send(req).await
}

/// For an update that must see the remote record first (`before_update` = `read`, or a `PUT`
/// of some fields): the record as the remote holds it (`Ok(Some)`), or `Ok(None)` when the
/// update needs no read. `Err`: not sent — the read's answer was not the record (a 404 then
/// stands as the update's answer: the record is gone), or the remote changed the record since
/// the base and it is to be applied first (`Sent::seen`).
async fn read_first(
    client: &Client,
    conv: &Conventions,
    d: &Delivery,
) -> Result<Option<(Map<String, Value>, Option<String>)>, Sent> {
    let needed = conv.read_first
        || (conv.if_match && d.etag.is_none())
        || (conv.update_method == Method::Put && d.partial && !conv.batch());
    if d.action != Action::Update || d.remote_key.is_none() || !needed {
        return Ok(None);
    }
    read_record(client, conv, d, conv.read_first || conv.if_match).await.map(Some)
}

/// Reads the record an update is about: the record and its version (`ETag`). With
/// `compare`, a record the remote changed since the base stops the update (`Sent::seen`).
async fn read_record(
    client: &Client,
    conv: &Conventions,
    d: &Delivery,
    compare: bool,
) -> Result<(Map<String, Value>, Option<String>), Sent> {
    let id = d.remote_key.as_deref().expect("an update has a remote key");
    let mut req = Request::new(Method::Get, conv.record_url(Some(id)));
    req.headers = conv.headers.clone();
    let mut answer = client.send(&req).await;
    let stop = |answer: Answer, seen: Option<Map<String, Value>>| Sent {
        delivery: d.clone(),
        answer,
        found_id: None,
        method: "GET",
        duplicates: Vec::new(),
        seen,
    };
    if !matches!(answer.status, Some(200..=299)) || answer.refused.is_some() {
        return Err(stop(answer, None));
    }
    let record = serde_json::from_str::<Value>(&answer.body)
        .ok()
        .and_then(|body| body.pointer(&conv.record_pointer).cloned())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        });
    let Some(mut record) = record else {
        answer.refused = Some(format!(
            "the record read before the update is not an object at \"{}\" of the answer: not updated; \
             set the link's created_id_pointer to where a record's answer holds its id",
            conv.record_pointer
        ));
        return Err(stop(answer, None));
    };
    if compare {
        if let Some(agreed) = &d.agreed {
            let changed = agreed.iter().any(|(name, was)| record.get(name).is_some_and(|now| !same(was, now)));
            if changed {
                record.entry(conv.remote_key_field.clone()).or_insert_with(|| Value::String(id.to_string()));
                return Err(stop(answer, Some(record)));
            }
        }
    }
    Ok((record, answer.etag))
}

/// For a create that went out before: the id of the record the remote already holds
/// (`Ok(Some)`), or none (`Ok(None)`: create it). `Err`: the lookup could not tell, and its
/// answer (or why it cannot be trusted) is the record's. A link without `local_id_field`
/// cannot look up and creates again, as the remote cannot say which record is whose.
async fn look_up_first(client: &Client, conv: &Conventions, d: &Delivery) -> Result<Option<String>, Sent> {
    let field = match (&conv.local_id_field, d.action == Action::Create && d.lookup) {
        (Some(field), true) => field,
        _ => return Ok(None),
    };
    let url = lookup::url(&conv.record_url(None), conv.lookup_query.as_deref(), field, &d.local_key);
    let mut req = Request::new(Method::Get, url);
    req.headers = conv.headers.clone();
    let mut answer = client.send(&req).await;
    let stop = |answer: Answer, duplicates: Vec<String>| Sent {
        delivery: d.clone(),
        answer,
        found_id: None,
        method: "GET",
        duplicates,
        seen: None,
    };
    if !matches!(answer.status, Some(200..=299)) || answer.refused.is_some() {
        return Err(stop(answer, Vec::new()));
    }
    let found = lookup::read(&answer.body, &conv.list_pointer, field, &conv.remote_key_field, &d.local_key);
    let (reason, duplicates) = match found {
        Found::Nothing => return Ok(None),
        Found::One(id) => return Ok(Some(id)),
        Found::Several(ids) => (lookup::duplicates_reason(&d.local_key, &ids), ids),
        Found::IgnoredFilter { others } => {
            (lookup::ignored_filter_reason(conv.lookup_query.as_deref(), others), vec![])
        }
        Found::NoList => (
            format!(
                "the lookup before a repeated create found no list at \"{}\" in its answer: not created again; \
                 set the link's list_pointer (or lookup_query), then retry_failed",
                conv.list_pointer
            ),
            vec![],
        ),
    };
    // A permanent failure, with the reason kept (see `delivery::judge`).
    answer.refused = Some(reason);
    Err(stop(answer, duplicates))
}

fn request(conv: &Conventions, method: Method, url: String, d: &Delivery) -> Request {
    let mut req = Request::new(method, url);
    req.headers = conv.headers.clone();
    req.headers.push(("Idempotency-Key".into(), conv.idempotency_key(d)));
    req
}

async fn send_batch(client: &Client, conv: &Arc<Conventions>, deliveries: Vec<Delivery>) -> Vec<Sent> {
    // Creates that went out before are looked up first, like one by one (at most
    // `concurrency` lookups at once); those the lookup stops keep its answer and stay out of
    // the batch, those it finds are updated instead.
    let limit = Arc::new(Semaphore::new(conv.concurrency));
    let mut lookups = Vec::new();
    // A batch carries no per-record header: `if_match` reads first there, as `read` does.
    let reads = conv.read_first || conv.if_match;
    let first = |d: &Delivery| (d.action == Action::Create && d.lookup) || (d.action == Action::Update && reads);
    for (i, d) in deliveries.iter().enumerate().filter(|(_, d)| first(d)) {
        let (client, conv, d, limit) = (client.clone(), conv.clone(), d.clone(), limit.clone());
        lookups.push((
            i,
            tokio::spawn(
                async move {
                    let _permit = limit.acquire_owned().await.expect("the semaphore is never closed");
                    // Updates read their record first (`before_update` = `read` or `if_match`).
                    if d.action == Action::Update {
                        read_record(&client, &conv, &d, true).await?;
                    }
                    look_up_first(&client, &conv, &d).await
                }
                .in_current_span(),
            ),
        ));
    }
    let mut found: Vec<Option<String>> = vec![None; deliveries.len()];
    let mut stopped: Vec<Option<Sent>> = vec![None; deliveries.len()];
    for (i, task) in lookups {
        match task.await.expect("a lookup task does not panic") {
            Ok(id) => found[i] = id,
            Err(sent) => stopped[i] = Some(sent),
        }
    }
    let going: Vec<usize> = (0..deliveries.len()).filter(|i| stopped[*i].is_none()).collect();
    let mut results: Vec<Option<Sent>> = stopped;
    if !going.is_empty() {
        let batch: Vec<(&Delivery, Option<&String>)> =
            going.iter().map(|&i| (&deliveries[i], found[i].as_ref())).collect();
        for (i, sent) in going.iter().zip(post_batch(client, conv, &batch).await) {
            results[*i] = Some(sent);
        }
    }
    results.into_iter().map(|s| s.expect("every delivery has an answer")).collect()
}

/// One `POST {batch_url}` for these deliveries (a create the lookup found goes as an update
/// of the record found); one `Sent` per delivery, in order.
async fn post_batch(client: &Client, conv: &Conventions, batch: &[(&Delivery, Option<&String>)]) -> Vec<Sent> {
    let url = conv.batch_url.clone().expect("batch mode has a URL");
    let items: Vec<Value> = batch
        .iter()
        .map(|(d, found)| {
            let op = if found.is_some() { Action::Update } else { d.action };
            json!({
                "op": op.name(),
                "id": found.map(|f| f.as_str()).or(d.remote_key.as_deref()),
                "local_key": d.local_key,
                "idempotency_key": conv.idempotency_key(d),
                "record": d.body.clone().map(Value::Object),
            })
        })
        .collect();
    let mut req = Request::new(Method::Post, url);
    req.headers = conv.headers.clone();
    req.body = Some(Value::Array(items).to_string());
    let answer = client.send(&req).await;
    let results: Option<Vec<Value>> = match answer.status {
        Some(200..=299) => serde_json::from_str::<Value>(&answer.body)
            .ok()
            .and_then(|body| body.pointer(&conv.batch_result_pointer).cloned())
            .and_then(|v| match v {
                Value::Array(items) if items.len() == batch.len() => Some(items),
                _ => None,
            }),
        _ => None,
    };
    let whole = match (&results, answer.status) {
        (None, Some(200..=299)) => Some(Answer {
            error: Some(format!(
                "the batch answer does not hold {} results at \"{}\"",
                batch.len(),
                conv.batch_result_pointer
            )),
            ..Default::default()
        }),
        _ => None,
    };
    batch
        .iter()
        .enumerate()
        .map(|(i, (d, found))| {
            let answer = match (&results, &whole) {
                (Some(items), _) => item_answer(&items[i]),
                (None, Some(bad)) => bad.clone(),
                (None, None) => answer.clone(),
            };
            Sent {
                delivery: (*d).clone(),
                answer,
                found_id: found.cloned(),
                method: "POST",
                duplicates: Vec::new(),
                seen: None,
            }
        })
        .collect()
}

/// A per-record result of a batch as if it were the answer to its own request.
fn item_answer(item: &Value) -> Answer {
    let status = item.get("status").and_then(Value::as_u64).map(|s| s as u16);
    let failed = item.get("error").is_some_and(|e| !e.is_null());
    Answer {
        status: Some(status.unwrap_or(if failed { 422 } else { 200 })),
        body: item.to_string(),
        ..Default::default()
    }
}
