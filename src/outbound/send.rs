//! Sending a batch of deliveries (async, on the transport runtime; no PostgreSQL here).
//!
//! Per-record mode: `POST {base}/{collection}` to create, `PATCH` (or `PUT`)
//! `{base}/{collection}/{id}` to update, `DELETE` to delete. A link has at most `concurrency`
//! requests on the network at once, whichever of its batches they belong to (`permits`).
//! Every request carries an `Idempotency-Key`. A create that was attempted before (its answer
//! may have been lost) is first looked up by the local-id field, and updates the record found
//! instead of creating a second one.
//!
//! Batch mode: one `POST {batch_url}` with an array of `{op, id, local_key, record}`; the
//! answer holds one result per record, in order (`status`, the created id, `error`).

use super::plan::{Action, Conventions, Delivery, Sent};
use crate::logic::delivery::{self, Answer};
use crate::transport::http::{Client, Method, Request};
use serde_json::{json, Value};
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
    let mut found_id = None;
    if d.action == Action::Create && d.lookup {
        if let Some(field) = &conv.local_id_field {
            found_id = look_up(client, conv, field, &d.local_key).await;
        }
    }
    let (method, url) = match (d.action, found_id.as_deref().or(d.remote_key.as_deref())) {
        (Action::Create, None) => (Method::Post, conv.record_url(None)),
        (Action::Create | Action::Update, Some(id)) => (conv.update_method, conv.record_url(Some(id))),
        (Action::Delete, id) => (Method::Delete, conv.record_url(id)),
        (Action::Update, None) => unreachable!("an update has a remote key"),
    };
    let mut req = request(conv, method, url, &d);
    if let Some(body) = &d.body {
        if d.action != Action::Delete {
            req.body = Some(Value::Object(body.clone()).to_string());
        }
    }
    let answer = client.send(&req).await;
    Sent { delivery: d, answer, found_id, method: method.name() }
}

fn request(conv: &Conventions, method: Method, url: String, d: &Delivery) -> Request {
    let mut req = Request::new(method, url);
    req.headers = conv.headers.clone();
    req.headers.push(("Idempotency-Key".into(), conv.idempotency_key(d)));
    req
}

/// `GET {base}/{collection}?{local_id_field}={key}`: the id of a record that already carries
/// this local id, if the remote supports such a filter and has one.
async fn look_up(client: &Client, conv: &Conventions, field: &str, key: &str) -> Option<String> {
    let url =
        format!("{}?{}={}", conv.record_url(None), delivery::encode_component(field), delivery::encode_component(key));
    let mut req = Request::new(Method::Get, url);
    req.headers = conv.headers.clone();
    let answer = client.send(&req).await;
    if !matches!(answer.status, Some(200..=299)) {
        return None;
    }
    let body: Value = serde_json::from_str(&answer.body).ok()?;
    let items = match &body {
        Value::Array(items) => items.as_slice(),
        other => other.pointer(&conv.list_pointer).and_then(Value::as_array)?.as_slice(),
    };
    // Only a record that really carries this local id counts (a remote that ignores the
    // filter returns everything).
    items
        .iter()
        .find(|item| item.get(field).and_then(delivery::id_text).as_deref() == Some(key))
        .and_then(|item| item.get(&conv.remote_key_field))
        .and_then(delivery::id_text)
}

async fn send_batch(client: &Client, conv: &Conventions, deliveries: Vec<Delivery>) -> Vec<Sent> {
    let url = conv.batch_url.clone().expect("batch mode has a URL");
    let items: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            json!({
                "op": d.action.name(),
                "id": d.remote_key,
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
                Value::Array(items) if items.len() == deliveries.len() => Some(items),
                _ => None,
            }),
        _ => None,
    };
    let whole = match (&results, answer.status) {
        (None, Some(200..=299)) => Some(Answer {
            error: Some(format!(
                "the batch answer does not hold {} results at \"{}\"",
                deliveries.len(),
                conv.batch_result_pointer
            )),
            ..Default::default()
        }),
        _ => None,
    };
    deliveries
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let answer = match (&results, &whole) {
                (Some(items), _) => item_answer(&items[i]),
                (None, Some(bad)) => bad.clone(),
                (None, None) => answer.clone(),
            };
            Sent { delivery: d, answer, found_id: None, method: "POST" }
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
