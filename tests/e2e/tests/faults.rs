//! Delivery against a remote that misbehaves (the in-process fault server): retries with
//! backoff for 5xx, 429 (Retry-After), timeouts and dropped connections; no second record
//! when a create's answer is lost; 4xx kept for good until retry_failed; the attempt limit;
//! capped responses; secrets that travel but are never written down; and one link's dead
//! remote not holding up another link.

use serde_json::{json, Value};
use std::time::Duration;
use syncbridge_e2e::fault::{FaultServer, Mode};
use syncbridge_e2e::remote::wait_for;
use syncbridge_e2e::worker::WorkerDb;

fn link(db: &WorkerDb, name: &str, url: &str, extra: Value) {
    db.outbound_link(name, url, json!({"local_id_field": "local_id", "pull": false}), extra);
}

/// (status, attempt, reason, seconds from the event to its next retry) of a link's
/// outbound events, oldest first.
fn events(db: &WorkerDb, link: &str) -> Vec<(String, i32, String, Option<f64>)> {
    db.admin()
        .query(
            "SELECT status, coalesce(attempt, 0), coalesce(reason, ''), extract(epoch FROM next_retry - at)::float8 \
             FROM syncbridge.events WHERE link = $1 AND direction = 'outbound' ORDER BY id",
            &[&link],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn status(code: u16, body: &str, retry_after: Option<u64>) -> Mode {
    Mode::Status { code, body: body.into(), retry_after }
}

#[test]
fn server_errors_and_429_are_retried_with_backoff() {
    let db = WorkerDb::take(8);
    let server = FaultServer::start();
    link(&db, "t", &server.url(), json!({}));
    server.then([status(500, "oops", None), status(503, r#"{"message": "busy"}"#, None)]);
    db.admin().execute("INSERT INTO t (name) VALUES ('Ada')", &[]).unwrap();
    wait_for(20, "delivered after two failures", || server.records("t").len() == 1);
    let ev = events(&db, "t");
    assert_eq!(
        ev.iter().map(|e| (e.0.as_str(), e.1)).collect::<Vec<_>>(),
        [("failed", 1), ("failed", 2), ("delivered", 3)]
    );
    assert_eq!(ev[0].2, "HTTP 500: oops");
    assert_eq!(ev[1].2, "HTTP 503: busy");
    let (first, second) = (ev[0].3.unwrap(), ev[1].3.unwrap());
    assert!((0.4..=1.1).contains(&first) && (0.9..=2.1).contains(&second), "backoff grows: {first} then {second}");
    let posts: Vec<_> = server.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 3);
    let key = posts[0].header("idempotency-key").expect("an idempotency key").to_string();
    assert!(posts.iter().all(|p| p.header("idempotency-key") == Some(key.as_str())), "the same key on every attempt");

    server.then([status(429, "slow down", Some(2))]);
    db.admin().execute("INSERT INTO t (name) VALUES ('Bob')", &[]).unwrap();
    wait_for(20, "delivered after the 429", || server.records("t").len() == 2);
    let ev = events(&db, "t");
    let limited = ev.iter().find(|e| e.2.starts_with("HTTP 429")).expect("a 429 event");
    assert!((1.9..=2.2).contains(&limited.3.unwrap()), "Retry-After: 2 honoured: {:?}", limited.3);
}

#[test]
fn timeouts_and_dropped_connections_are_retried() {
    let db = WorkerDb::take(9);
    let server = FaultServer::start();
    link(&db, "t", &server.url(), json!({"timeout_ms": 500}));
    server.then([Mode::Hang, Mode::Drop]);
    db.admin().execute("INSERT INTO t (name) VALUES ('Ada')", &[]).unwrap();
    wait_for(30, "delivered after a timeout and a dropped connection", || server.records("t").len() == 1);
    let ev = events(&db, "t");
    assert_eq!(ev.len(), 3, "{ev:?}");
    assert_eq!(ev[0].2, "timed out after 500 ms");
    assert!(ev[1].2.starts_with("request failed") || ev[1].2.starts_with("cannot connect"), "{}", ev[1].2);
    assert_eq!(ev[2].0, "delivered");
}

#[test]
fn a_lost_create_answer_does_not_make_a_second_record() {
    let db = WorkerDb::take(10);
    let server = FaultServer::start();
    link(&db, "t", &server.url(), json!({}));
    server.then([Mode::StoreThenDrop]);
    db.admin().execute("INSERT INTO t (name) VALUES ('Ada')", &[]).unwrap();
    wait_for(20, "the record is paired", || {
        db.count("SELECT count(*) FROM syncbridge._record WHERE remote_key IS NOT NULL") == 1
    });
    assert_eq!(server.records("t").len(), 1, "a second remote record was created");
    let requests = server.requests();
    let calls: Vec<(String, String)> = requests.iter().map(|r| (r.method.clone(), r.target.clone())).collect();
    assert_eq!(
        calls,
        [("POST".into(), "/t".into()), ("GET".into(), "/t?local_id=1".into()), ("PATCH".into(), "/t/1".into())]
    );
    assert_eq!(
        requests[0].header("idempotency-key"),
        requests[2].header("idempotency-key"),
        "one key for both attempts"
    );
    let ev = events(&db, "t");
    assert_eq!(ev.last().unwrap().2, "an earlier attempt had created it; updated");
    let remote: String = db.admin().query_one("SELECT remote_key FROM syncbridge._record", &[]).unwrap().get(0);
    assert_eq!(remote, "1");
}

#[test]
fn client_errors_are_kept_for_good_until_retry_failed_and_attempts_are_limited() {
    let db = WorkerDb::take(11);
    let server = FaultServer::start();
    link(&db, "t", &server.url(), json!({"max_attempts": 2, "max_response_bytes": 1000}));
    server.then([status(422, r#"{"message": "name is invalid"}"#, None)]);
    let mut c = db.admin();
    c.execute("INSERT INTO t (name) VALUES ('Ada')", &[]).unwrap();
    wait_for(20, "the refusal is dead-lettered", || db.count("SELECT dead_letters FROM syncbridge.link_status") == 1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(server.requests().len(), 1, "a 4xx is not retried");
    assert_eq!(events(&db, "t")[0].2, "HTTP 422: name is invalid");
    let requeued = db.count("SELECT syncbridge.retry_failed('t')");
    assert_eq!(requeued, 1);
    wait_for(20, "delivered once queued again", || server.records("t").len() == 1);

    // Oversized answers are refused (and tried again).
    server.then([Mode::Huge]);
    c.execute("INSERT INTO t (name) VALUES ('Dan')", &[]).unwrap();
    wait_for(20, "delivered after the oversized answer", || server.records("t").len() == 2);
    let ev = events(&db, "t");
    assert!(ev.iter().any(|e| e.2.starts_with("response larger than 1000 bytes")), "{ev:?}");

    // Attempts are limited for a record's own failures: the remote fails it while it takes
    // the others. (Failures while it takes nothing are an outage: tests/outage.rs.)
    server.fail_matching("Bob", status(500, "", None));
    c.execute("INSERT INTO t (name) VALUES ('Bob'), ('Carl')", &[]).unwrap();
    wait_for(20, "given up after two attempts", || {
        events(&db, "t").iter().any(|e| e.2.starts_with("gave up after 2 attempts"))
    });
    assert_eq!(server.records("t").len(), 3, "Carl is delivered");
    let failed: bool = c.query_one("SELECT failed FROM syncbridge._pending WHERE local_key = '3'", &[]).unwrap().get(0);
    assert!(failed);
}

#[test]
fn secrets_travel_in_headers_but_are_never_written_down() {
    let db = WorkerDb::take(12);
    let server = FaultServer::start();
    link(&db, "t", &server.url(), json!({"auth_secret": "tok", "auth_header": "X-Api-Key"}));
    let mut c = db.admin();
    c.execute("SELECT syncbridge.set_secret('tok', 'very-secret-123')", &[]).unwrap();
    server.then([status(401, r#"{"message": "key very-secret-123 expired"}"#, None)]);
    c.execute("INSERT INTO t (name) VALUES ('Ada')", &[]).unwrap();
    wait_for(20, "the request arrived", || !server.requests().is_empty());
    assert_eq!(server.requests()[0].header("x-api-key"), Some("very-secret-123"));
    wait_for(20, "the refusal is recorded", || !events(&db, "t").is_empty());
    // The remote repeated the key in its message: it is masked before anything is stored.
    let leaks: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM syncbridge.events WHERE to_jsonb(events)::text LIKE '%very-secret%') \
                  + (SELECT count(*) FROM syncbridge._pending WHERE last_error LIKE '%very-secret%')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(leaks, 0);
    let reason: String =
        c.query_one("SELECT reason FROM syncbridge.events WHERE link = 't' ORDER BY id LIMIT 1", &[]).unwrap().get(0);
    assert_eq!(reason, "HTTP 401: key *** expired");
    let log = syncbridge_e2e::server_log();
    assert!(!log.contains("very-secret-123"), "the secret is in the server log");

    // A link whose secret is missing sends nothing without it, and says why.
    link(&db, "nokey", &server.url(), json!({"auth_secret": "missing"}));
    c.execute("INSERT INTO nokey (name) VALUES ('Bob')", &[]).unwrap();
    wait_for(20, "the link is failing for its secret", || {
        let r = db
            .admin()
            .query_one("SELECT state, coalesce(last_error, '') FROM syncbridge.link_status WHERE link = 'nokey'", &[])
            .unwrap();
        let (state, error): (String, String) = (r.get(0), r.get(1));
        state == "failing" && error.contains("secret \"missing\" is not set")
    });
    assert!(server.requests().iter().all(|r| !r.target.starts_with("/nokey")), "sent without its auth header");
    c.execute("SELECT syncbridge.set_secret('missing', 'found-it')", &[]).unwrap();
    wait_for(30, "delivered once the secret is set", || server.records("nokey").len() == 1);
    let sent = server.requests().into_iter().find(|r| r.target == "/nokey").unwrap();
    assert_eq!(sent.header("authorization"), Some("found-it"));
}

#[test]
fn a_hanging_remote_does_not_hold_up_another_link() {
    let db = WorkerDb::take(13);
    let stuck = FaultServer::start();
    stuck.always(Mode::Hang);
    let fine = FaultServer::start();
    link(&db, "slow", &stuck.url(), json!({"timeout_ms": 20000}));
    link(&db, "fast", &fine.url(), json!({}));
    let mut c = db.admin();
    c.execute("INSERT INTO slow (name) VALUES ('stuck')", &[]).unwrap();
    wait_for(10, "the slow link's request is hanging", || !stuck.requests().is_empty());
    let t = std::time::Instant::now();
    c.execute("INSERT INTO fast (name) VALUES ('quick')", &[]).unwrap();
    wait_for(5, "the other link delivers meanwhile", || fine.records("fast").len() == 1);
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
}

#[test]
fn batch_mode_posts_many_records_and_reads_per_record_results() {
    let db = WorkerDb::take(14);
    let server = FaultServer::start();
    link(&db, "t", &server.url(), json!({"batch_url": "batch"}));
    let mut c = db.admin();
    c.execute("SELECT syncbridge.pause_link('t')", &[]).unwrap();
    c.execute("INSERT INTO t (name) SELECT 'n' || g FROM generate_series(1, 50) g", &[]).unwrap();
    c.execute("SELECT syncbridge.resume_link('t')", &[]).unwrap();
    wait_for(20, "50 records paired", || {
        db.count("SELECT count(*) FROM syncbridge._record WHERE remote_key IS NOT NULL") == 50
    });
    let posts = server.requests().into_iter().filter(|r| r.target == "/batch").count();
    assert!(posts <= 2, "{posts} batch requests for 50 records");
    assert_eq!(server.records("batch").len(), 50);
}
