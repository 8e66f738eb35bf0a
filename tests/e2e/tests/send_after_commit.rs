//! A create leaves only once its claim (and the create mark it sets) is committed. Alone in its
//! binary: it kills the worker, and a SIGKILL restarts every backend.
//!
//! The worker claims the records of each link in one round's transaction. Here that round is
//! held open after link `a`'s claim: link `b`'s claim waits for a row lock a client holds (up
//! to `syncbridge.lock_timeout`). The worker is killed as soon as the remote has `a`'s records.
//! Had they left before the round committed, the claim and its create marks would be rolled
//! back by the kill, and after the restart the records would be created a second time instead
//! of being looked up first.

use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use syncbridge_e2e::remote::{wait_for, JsonServer};
use syncbridge_e2e::worker::WorkerDb;

const ROWS: usize = 6;

#[test]
fn a_round_cut_off_before_its_commit_sent_nothing_that_is_created_again() {
    let db = WorkerDb::take(30);
    let server = JsonServer::start(&["a", "b"]);
    let settings = json!({"local_id_field": "local_id", "pull": false, "concurrency": 4});
    // Created in this order, `a` is claimed before `b` in each round.
    for name in ["a", "b"] {
        db.outbound_link(name, &server.url(), settings.clone(), json!({}));
    }
    let mut holder = db.admin();
    let mut hold = holder.transaction().unwrap();
    hold.batch_execute("SELECT FROM syncbridge._link WHERE name = 'b' FOR UPDATE").unwrap();
    db.admin()
        .batch_execute(&format!("INSERT INTO a (name) SELECT 'n' || g FROM generate_series(1, {ROWS}) g"))
        .unwrap();
    // Kill the moment the remote has something of `a` (while `b`'s claim waits, if the
    // requests left before the commit), or after 30 s if it never does.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.list("a").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    db.kill_worker();
    drop(hold);
    wait_for(60, "every row paired", || {
        std::panic::catch_unwind(|| {
            db.count("SELECT count(*) FROM syncbridge._record WHERE remote_key IS NOT NULL") == ROWS as i64
        })
        .unwrap_or(false)
    });
    let records = server.list("a");
    let local_ids: HashSet<i64> = records.iter().map(|r| r["local_id"].as_i64().unwrap()).collect();
    assert_eq!(local_ids.len(), ROWS, "every row arrived");
    assert_eq!(records.len(), ROWS, "{} records created twice", records.len() - ROWS);
}
