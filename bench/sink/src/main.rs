//! The remote of `bench/deliver`: an HTTP sink that only counts what it receives and answers
//! as a REST remote would (`POST /{coll}` → 201 with a new id, `PATCH`/`PUT`/`DELETE` → 200,
//! `POST /batch` → one result per record), plus the two drivers of the benchmark; and the
//! drivers of `bench/inbound` (module `inbound`).
//!
//!   syncbridge-bench-sink serve PORT
//!       Serves until killed; `GET /count` returns {"records": N, "requests": M}.
//!   syncbridge-bench-sink baseline PORT RECORDS BATCH
//!       Posts RECORDS records in batches of BATCH to a sink at PORT from this process and prints
//!       records/s: the ceiling of one client against this sink on this machine.
//!   syncbridge-bench-sink latency PORT CONNINFO TABLE RATE SECONDS
//!       Serves a sink at PORT and commits single-row INSERTs into TABLE at RATE per second;
//!       prints the commit → remote latencies, timed from the start of each autocommitted
//!       INSERT (the row's id travels as local_id).
//!   syncbridge-bench-sink update-latency PORT CONNINFO TABLE RATE SECONDS
//!       The same for single-row UPDATEs of rows the link has paired, timed to the first
//!       PATCH/PUT of each row's remote id. (GETs, a pull or a read before an update, are
//!       answered with an empty page or the bare record and counted as requests only.)
//!   syncbridge-bench-sink push-latency LISTEN_PORT LINK TOKEN CONNINFO CHANNEL RATE SECONDS KEYS
//!       Pushes one edited record a request to the worker's listener at RATE per second; prints
//!       the edit → NOTIFY latencies, then the HTTP round trips'.
//!   syncbridge-bench-sink sql-latency CONNINFO TABLE CHANNEL RATE SECONDS
//!       The same edits as UPDATEs committed by a client (the floor).
//!   syncbridge-bench-sink pull-latency PORT CONNINFO TABLE CHANNEL RATE SECONDS KEYS WAIT
//!       Serves KEYS records at PORT, edits them at RATE per second; the link pulls them.
//!   syncbridge-bench-sink push-throughput LISTEN_PORT LINK TOKEN RECORDS BATCH
//!   syncbridge-bench-sink apply-throughput CONNINFO LINK RECORDS BATCH
//!       RECORDS new records in batches of BATCH, through the listener or apply_inbound;
//!       prints records/s.
//!
//! Latency lines read "N P50 P99 MAX MISSING" (milliseconds).

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod inbound;

#[derive(Default)]
struct Sink {
    records: AtomicU64,
    requests: AtomicU64,
    next_id: AtomicU64,
    /// local_id → arrival, for the latency driver.
    arrivals: Mutex<HashMap<i64, Instant>>,
    /// Remote id → first arrival of an update of it, for the update latency driver.
    updates: Mutex<HashMap<String, Instant>>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build().unwrap();
    match args.get(1).map(String::as_str) {
        Some("serve") => {
            let port: u16 = args[2].parse().expect("port");
            rt.block_on(serve(port, Arc::new(Sink::default())));
        }
        Some("baseline") => {
            let port: u16 = args[2].parse().expect("port");
            let (records, batch): (u64, u64) = (args[3].parse().unwrap(), args[4].parse().unwrap());
            rt.block_on(baseline(port, records, batch));
        }
        Some("update-latency") => {
            let port: u16 = args[2].parse().expect("port");
            let sink = Arc::new(Sink::default());
            rt.spawn(serve(port, sink.clone()));
            update_latency(sink, &args[3], &args[4], args[5].parse().unwrap(), args[6].parse().unwrap());
        }
        Some("latency") => {
            let port: u16 = args[2].parse().expect("port");
            let sink = Arc::new(Sink::default());
            rt.spawn(serve(port, sink.clone()));
            latency(sink, &args[3], &args[4], args[5].parse().unwrap(), args[6].parse().unwrap());
        }
        Some("push-latency") => {
            let n = |i: usize| args[i].parse::<u64>().expect("a number");
            let port = n(2) as u16;
            inbound::push_latency(&rt, port, &args[3], &args[4], &args[5], &args[6], n(7), n(8), n(9));
        }
        Some("sql-latency") => {
            inbound::sql_latency(&args[2], &args[3], &args[4], args[5].parse().unwrap(), args[6].parse().unwrap());
        }
        Some("pull-latency") => {
            let n = |i: usize| args[i].parse::<u64>().expect("a number");
            inbound::pull_latency(n(2) as u16, &args[3], &args[4], &args[5], n(6), n(7), n(8), n(9));
        }
        Some("push-throughput") => {
            let n = |i: usize| args[i].parse::<u64>().expect("a number");
            rt.block_on(inbound::push_throughput(n(2) as u16, &args[3], &args[4], n(5), n(6)));
        }
        Some("apply-throughput") => {
            inbound::apply_throughput(&args[2], &args[3], args[4].parse().unwrap(), args[5].parse().unwrap());
        }
        _ => {
            eprintln!("usage: syncbridge-bench-sink serve PORT | baseline PORT RECORDS BATCH | latency PORT CONNINFO TABLE RATE SECONDS | push-latency … | sql-latency … | pull-latency … | push-throughput … | apply-throughput … (see the module's doc)");
            std::process::exit(2);
        }
    }
}

async fn serve(port: u16, sink: Arc<Sink>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await.expect("bind");
    loop {
        let (stream, _) = listener.accept().await.expect("accept");
        let sink = sink.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(sink.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(sink: Arc<Sink>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await?.to_bytes();
    sink.requests.fetch_add(1, Ordering::Relaxed);
    let reply = |status: u16, v: Value| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", "application/json")
            // One version for every record, which never changes: a conditional update
            // (If-Match) always goes through.
            .header("etag", "\"v1\"")
            .body(Full::new(Bytes::from(v.to_string())))
            .unwrap())
    };
    if method == Method::GET && path == "/count" {
        return reply(
            200,
            json!({"records": sink.records.load(Ordering::Relaxed), "requests": sink.requests.load(Ordering::Relaxed)}),
        );
    }
    // Reads (a pull, or a read before an update): an empty page, or the record with nothing
    // changed; counted as requests, not records.
    if method == Method::GET {
        return match path.trim_start_matches('/').split_once('/') {
            Some((_, id)) => reply(200, json!({"id": id})),
            None => reply(200, json!([])),
        };
    }
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if method == Method::PATCH || method == Method::PUT {
        if let Some((_, id)) = path.trim_start_matches('/').split_once('/') {
            sink.updates.lock().unwrap().entry(id.to_string()).or_insert_with(Instant::now);
        }
    }
    if method == Method::POST && path == "/batch" {
        let items = parsed.as_array().cloned().unwrap_or_default();
        sink.records.fetch_add(items.len() as u64, Ordering::Relaxed);
        let results: Vec<Value> = items
            .iter()
            .map(|item| match item.get("id") {
                Some(Value::Null) | None => {
                    json!({"status": 201, "id": sink.next_id.fetch_add(1, Ordering::Relaxed) + 1})
                }
                Some(id) => json!({"status": 200, "id": id}),
            })
            .collect();
        return reply(200, Value::Array(results));
    }
    sink.records.fetch_add(1, Ordering::Relaxed);
    if let Some(local) = parsed.get("local_id").and_then(Value::as_i64) {
        sink.arrivals.lock().unwrap().entry(local).or_insert_with(Instant::now);
    }
    if method == Method::POST {
        let id = sink.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        return reply(201, json!({"id": id}));
    }
    reply(200, json!({}))
}

async fn baseline(port: u16, records: u64, batch: u64) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let started = Instant::now();
    let mut sent = 0;
    while sent < records {
        let n = batch.min(records - sent);
        let items: Vec<Value> = (0..n)
            .map(|i| json!({"op": "create", "id": null, "local_key": (sent + i).to_string(), "record": {"name": format!("name {}", sent + i), "email": "x@example.com", "balance": 1.5}}))
            .collect();
        let req = Request::post("/batch")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(Value::Array(items).to_string())))
            .unwrap();
        sender.ready().await.expect("connection ready");
        let resp = sender.send_request(req).await.expect("send");
        let _ = resp.into_body().collect().await.expect("body");
        sent += n;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{:.0}", records as f64 / secs);
}

fn latency(sink: Arc<Sink>, conninfo: &str, table: &str, rate: u64, seconds: u64) {
    let mut client = postgres::Client::connect(conninfo, postgres::NoTls).expect("connect");
    let insert = client.prepare(&format!("INSERT INTO {table} (name) VALUES ($1) RETURNING id")).expect("prepare");
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut committed: Vec<(i64, Instant)> = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        // Timed from before the statement: the worker is woken inside the commit, and may
        // deliver before the client even hears that its commit is done.
        let sent = Instant::now();
        let row = client.query_one(&insert, &[&format!("row {i}")]).expect("insert");
        let id: i64 = row.get(0);
        committed.push((id, sent));
    }
    report(&committed, &sink.arrivals);
}

/// Like `latency`, for updates of rows the link has already paired: commits single-row
/// UPDATEs at RATE per second and times each to the first PATCH or PUT of its remote id.
fn update_latency(sink: Arc<Sink>, conninfo: &str, table: &str, rate: u64, seconds: u64) {
    let mut client = postgres::Client::connect(conninfo, postgres::NoTls).expect("connect");
    let pairs: Vec<(i64, String)> = client
        .query(
            "SELECT local_key::bigint, remote_key FROM syncbridge._record WHERE remote_key IS NOT NULL ORDER BY 1",
            &[],
        )
        .expect("the id map")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let total = (rate * seconds) as usize;
    assert!(pairs.len() >= total, "{} paired rows, {total} needed", pairs.len());
    let update = client.prepare(&format!("UPDATE {table} SET name = $1 WHERE id = $2")).expect("prepare");
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut committed: Vec<(String, Instant)> = Vec::with_capacity(total);
    for (i, (local, remote)) in pairs.into_iter().take(total).enumerate() {
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let sent = Instant::now();
        client.execute(&update, &[&format!("edited {i}"), &local]).expect("update");
        committed.push((remote, sent));
    }
    report(&committed, &sink.updates);
}

/// Waits (up to 30 s) for every committed change to arrive, then prints "N P50 P99 MAX
/// MISSING" in milliseconds.
fn report<K: std::hash::Hash + Eq>(committed: &[(K, Instant)], arrivals: &Mutex<HashMap<K, Instant>>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = arrivals.lock().unwrap().len();
        if got >= committed.len() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let arrivals = arrivals.lock().unwrap();
    let mut ms: Vec<f64> = committed
        .iter()
        .filter_map(|(id, at)| arrivals.get(id).map(|a| a.saturating_duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    let missing = committed.len() - ms.len();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms.get(((ms.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
    println!(
        "{} {:.1} {:.1} {:.1} {}",
        committed.len(),
        pct(0.50),
        pct(0.99),
        ms.last().copied().unwrap_or(f64::NAN),
        missing
    );
}
