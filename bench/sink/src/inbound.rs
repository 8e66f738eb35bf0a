//! The drivers of `bench/inbound`: a remote edit → the local row visible, pushed through the
//! worker's webhook listener or pulled from a remote this process serves, and the pushed
//! throughput. Visibility is a NOTIFY from a trigger on the linked table (`pg_notify(channel,
//! NEW.seq)`), heard on a LISTENing connection: each edit carries a new `seq`, and the first
//! notification of a seq is the moment its row was committed.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use postgres::fallible_iterator::FallibleIterator;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Arrivals = Arc<Mutex<HashMap<i64, Instant>>>;

/// LISTENs on `channel` in a thread of its own until `stop`, noting when each seq first arrives.
fn listen(conninfo: &str, channel: &str, stop: Arc<AtomicBool>) -> Arrivals {
    let arrivals: Arrivals = Arc::default();
    let mut client = postgres::Client::connect(conninfo, postgres::NoTls).expect("connect");
    client.batch_execute(&format!("LISTEN {channel}")).expect("listen");
    let seen = arrivals.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let mut n = client.notifications();
            let mut it = n.timeout_iter(Duration::from_millis(50));
            while let Ok(Some(note)) = it.next() {
                let at = Instant::now();
                if let Ok(seq) = note.payload().parse::<i64>() {
                    seen.lock().unwrap().entry(seq).or_insert(at);
                }
            }
        }
    });
    arrivals
}

/// Waits (at most `limit`) until every seq of `sent` has arrived; returns the latencies in ms,
/// sorted, and how many never arrived.
fn collect(arrivals: &Arrivals, sent: &[(i64, Instant)], limit: Duration) -> (Vec<f64>, usize) {
    let deadline = Instant::now() + limit;
    while arrivals.lock().unwrap().len() < sent.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen = arrivals.lock().unwrap();
    let mut ms: Vec<f64> = sent
        .iter()
        .filter_map(|(seq, at)| seen.get(seq).map(|a| a.saturating_duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    ms.sort_by(f64::total_cmp);
    let missing = sent.len() - ms.len();
    (ms, missing)
}

/// "N P50 P99 MAX MISSING", in ms.
pub fn summary(ms: &[f64], missing: usize) -> String {
    let pct = |p: f64| ms.get(((ms.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
    format!(
        "{} {:.1} {:.1} {:.1} {}",
        ms.len() + missing,
        pct(0.50),
        pct(0.99),
        ms.last().copied().unwrap_or(f64::NAN),
        missing
    )
}

/// One keep-alive connection to the listener, posting record arrays with the link's token.
struct Pusher {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: String,
    token: String,
    n: u64,
}

impl Pusher {
    async fn connect(port: u16, link: &str, token: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect to the listener");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        Self { sender, path: format!("/links/{link}/records"), token: token.into(), n: 0 }
    }

    /// Posts `records`; panics unless the listener answers 200 with no failed record.
    async fn push(&mut self, records: Vec<Value>) {
        self.n += 1;
        let req = Request::post(self.path.as_str())
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", self.token))
            .header("x-delivery-id", format!("bench-{}-{}", std::process::id(), self.n))
            .body(Full::new(Bytes::from(Value::Array(records).to_string())))
            .unwrap();
        self.sender.ready().await.expect("connection ready");
        let resp = self.sender.send_request(req).await.expect("send");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(status == 200 && !text.contains("\"failed\""), "the listener answered {status}: {text}");
    }
}

fn record(key: &str, seq: i64) -> Value {
    json!({"id": key, "name": format!("name {seq}"), "seq": seq})
}

/// Edits `keys` records by pushing, one record a request at `rate` per second for `seconds`.
/// The records are created first (not timed). Prints the summary, then the HTTP round trips'.
#[allow(clippy::too_many_arguments)]
pub fn push_latency(
    rt: &tokio::runtime::Runtime,
    port: u16,
    link: &str,
    token: &str,
    conninfo: &str,
    channel: &str,
    rate: u64,
    seconds: u64,
    keys: u64,
) {
    // The synchronous client first: it cannot be made inside the runtime.
    let stop = Arc::new(AtomicBool::new(false));
    let arrivals = listen(conninfo, channel, stop.clone());
    let (sent, mut trips) = rt.block_on(async {
        let mut pusher = Pusher::connect(port, link, token).await;
        pusher.push((0..keys).map(|k| record(&format!("k{k}"), 0)).collect()).await;
        let total = rate * seconds;
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let start = Instant::now();
        let mut sent = Vec::with_capacity(total as usize);
        let mut trips = Vec::with_capacity(total as usize);
        for i in 0..total {
            if let Some(wait) = (start + interval * i as u32).checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            let seq = i as i64 + 1;
            let at = Instant::now();
            pusher.push(vec![record(&format!("k{}", i % keys), seq)]).await;
            trips.push(at.elapsed().as_secs_f64() * 1000.0);
            sent.push((seq, at));
        }
        (sent, trips)
    });
    let (ms, missing) = collect(&arrivals, &sent, Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    trips.sort_by(f64::total_cmp);
    println!("{}", summary(&ms, missing));
    println!("{}", summary(&trips, 0));
}

/// The floor of the same measure: the edit as a plain UPDATE committed by a client, to its
/// NOTIFY. Same keys, rate and seconds as `push_latency`.
pub fn sql_latency(conninfo: &str, table: &str, channel: &str, rate: u64, seconds: u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let arrivals = listen(conninfo, channel, stop.clone());
    let mut client = postgres::Client::connect(conninfo, postgres::NoTls).expect("connect");
    let ids: Vec<i64> = client
        .query(&format!("SELECT id FROM {table} ORDER BY id"), &[])
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!ids.is_empty(), "{table} is empty");
    let update = client.prepare(&format!("UPDATE {table} SET seq = $1, name = $2 WHERE id = $3")).expect("prepare");
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut sent = Vec::with_capacity(total as usize);
    for i in 0..total {
        if let Some(wait) = (start + interval * i as u32).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let seq = 1_000_000_000 + i as i64;
        let at = Instant::now();
        client.execute(&update, &[&seq, &format!("name {seq}"), &ids[i as usize % ids.len()]]).expect("update");
        sent.push((seq, at));
    }
    let (ms, missing) = collect(&arrivals, &sent, Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    println!("{}", summary(&ms, missing));
}

/// Serves `keys` records at `GET /{anything}` (a JSON array, the whole collection) and edits one
/// of them at `rate` per second for `seconds`; the link pulls them at its own interval. Waits
/// for the first pull to bring every record before it starts editing.
#[allow(clippy::too_many_arguments)]
pub fn pull_latency(
    port: u16,
    conninfo: &str,
    table: &str,
    channel: &str,
    rate: u64,
    seconds: u64,
    keys: u64,
    wait: u64,
) {
    let store: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new((0..keys).map(|k| record(&format!("p{k}"), 0)).collect()));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(1).build().unwrap();
    rt.spawn(serve_store(port, store.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let arrivals = listen(conninfo, channel, stop.clone());
    let mut client = postgres::Client::connect(conninfo, postgres::NoTls).expect("connect");
    let deadline = Instant::now() + Duration::from_secs(wait + 30);
    loop {
        let n: i64 = client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).expect("count").get(0);
        if n as u64 >= keys {
            break;
        }
        assert!(Instant::now() < deadline, "the first pull did not bring the records ({n} of {keys})");
        std::thread::sleep(Duration::from_millis(100));
    }
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut sent = Vec::with_capacity(total as usize);
    for i in 0..total {
        if let Some(wait) = (start + interval * i as u32).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let seq = i as i64 + 1;
        let k = (i % keys) as usize;
        let at = Instant::now();
        store.lock().unwrap()[k] = record(&format!("p{k}"), seq);
        sent.push((seq, at));
    }
    let (ms, missing) = collect(&arrivals, &sent, Duration::from_secs(wait + 10));
    stop.store(true, Ordering::Relaxed);
    println!("{}", summary(&ms, missing));
}

async fn serve_store(port: u16, store: Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await.expect("bind");
    loop {
        let (stream, _) = listener.accept().await.expect("accept");
        let store = store.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let body = if req.method() == hyper::Method::GET {
                    Value::Array(store.lock().unwrap().clone()).to_string()
                } else {
                    "{}".to_string()
                };
                async move {
                    Ok::<_, hyper::Error>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap(),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn batches(prefix: &str, records: u64, batch: u64) -> Vec<Vec<Value>> {
    (0..records.div_ceil(batch))
        .map(|b| (b * batch..((b + 1) * batch).min(records)).map(|i| record(&format!("{prefix}{i}"), -1)).collect())
        .collect()
}

/// Pushes `records` new records in batches of `batch`, one request after another on one
/// keep-alive connection; prints records/s (each 200 comes after its commit).
pub async fn push_throughput(port: u16, link: &str, token: &str, records: u64, batch: u64) {
    let bodies = batches("t", records, batch);
    let mut pusher = Pusher::connect(port, link, token).await;
    let start = Instant::now();
    for b in bodies {
        pusher.push(b).await;
    }
    println!("{:.0}", records as f64 / start.elapsed().as_secs_f64());
}

/// The same records through `syncbridge.apply_inbound` over one client connection: the apply
/// without HTTP or the worker. Prints records/s.
pub fn apply_throughput(conninfo: &str, link: &str, records: u64, batch: u64) {
    let bodies = batches("a", records, batch);
    let mut client = postgres::Client::connect(conninfo, postgres::NoTls).expect("connect");
    let apply = client.prepare("SELECT count(*) FROM syncbridge.apply_inbound($1, $2::text::jsonb)").expect("prepare");
    let start = Instant::now();
    for b in bodies {
        client.query_one(&apply, &[&link, &Value::Array(b).to_string()]).expect("apply_inbound");
    }
    println!("{:.0}", records as f64 / start.elapsed().as_secs_f64());
}
