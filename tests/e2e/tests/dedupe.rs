//! Issue 14: a create is found again on every path instead of being sent twice, and two
//! remote records that carry one local id are reported, never paired silently.
//!
//! Against the in-process fault remote: a remote that ignores the worker's filter and pages
//! its lists; a create whose answer is lost while the row is edited; a 2xx create answer that
//! is not JSON; a remote that answers two creates with the same id. (The worker killed
//! mid-drain in batch mode is in dedupe_crash.rs: a SIGKILL restarts every backend.)

use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;
use syncbridge_e2e::fault::{FaultServer, FilterStyle, Mode};
use syncbridge_e2e::remote::wait_for;
use syncbridge_e2e::worker::WorkerDb;

fn link(db: &WorkerDb, name: &str, url: &str, extra: Value) {
    db.outbound_link(name, url, json!({"local_id_field": "local_id", "pull": false}), extra);
}

/// (status, attempt, reason) of a link's outbound events, oldest first.
fn events(db: &WorkerDb, link: &str) -> Vec<(String, i32, String)> {
    db.admin()
        .query(
            "SELECT status, coalesce(attempt, 0), coalesce(reason, '') FROM syncbridge.events \
             WHERE link = $1 AND direction = 'outbound' ORDER BY id",
            &[&link],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Remote records of `collection` by the local id they carry.
fn copies(server: &FaultServer, collection: &str, local_id: i64) -> usize {
    server.records(collection).iter().filter(|r| r["local_id"] == json!(local_id)).count()
}

fn remote_key(db: &WorkerDb, local_key: &str) -> Option<String> {
    db.admin()
        .query_opt("SELECT remote_key FROM syncbridge._record WHERE local_key = $1", &[&local_key])
        .unwrap()
        .and_then(|r| r.get(0))
}

fn posts(server: &FaultServer, path: &str) -> usize {
    server.requests().iter().filter(|r| r.method == "POST" && r.target == path).count()
}

/// Point 1: the remote ignores `local_id=…` and answers the first page of everything. The
/// lookup sees a page full of other records: the record fails with a message that names the
/// setting, and no second create goes out. With `lookup_query` in the remote's own syntax the
/// record is found and paired. Then the pull and the lookup meet a second copy: reported.
#[test]
fn a_remote_that_ignores_the_filter_gets_no_second_create() {
    let db = WorkerDb::take(45);
    let server = FaultServer::start();
    server.filters(FilterStyle::Bracket);
    server.page_lists(2);
    link(&db, "t", &server.url(), json!({"list_pointer": "/data"}));
    let mut c = db.admin();
    c.execute("INSERT INTO t (name) SELECT 'n' || g FROM generate_series(1, 3) g", &[]).unwrap();
    wait_for(20, "three records paired", || {
        db.count("SELECT count(*) FROM syncbridge._record WHERE remote_key IS NOT NULL") == 3
    });
    server.then([Mode::StoreThenDrop]);
    c.execute("INSERT INTO t (name) VALUES ('lost')", &[]).unwrap();
    wait_for(20, "the lost create is tried again", || {
        copies(&server, "t", 4) > 1 || events(&db, "t").iter().any(|e| e.2.contains("lookup_query"))
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(copies(&server, "t", 4), 1, "a second create went out: {:?}", events(&db, "t"));
    assert_eq!(posts(&server, "/t"), 4);
    let failed = events(&db, "t").into_iter().find(|e| e.2.contains("lookup_query")).unwrap();
    assert_eq!(failed.0, "failed");
    assert!(failed.2.contains("ignored"), "{}", failed.2);
    assert_eq!(db.count("SELECT dead_letters FROM syncbridge.link_status"), 1, "failed for good, not retried blindly");

    // The remote's own filter syntax.
    c.execute("SELECT syncbridge.alter_link('t', '{\"lookup_query\": \"filter[local_id]={local_id}\"}')", &[]).unwrap();
    c.execute("SELECT syncbridge.retry_failed('t')", &[]).unwrap();
    wait_for(20, "the lost create is found and paired", || remote_key(&db, "4").is_some());
    assert_eq!(copies(&server, "t", 4), 1);
    assert_eq!(remote_key(&db, "4").as_deref(), Some("4"));
    assert!(server.requests().iter().any(|r| r.method == "GET" && r.target == "/t?filter[local_id]=4"));

    // A second copy of record 1 appears remotely (another client, a broken import): the lookup
    // of a create and the pull both report it instead of pairing it.
    server.insert("t", json!({"id": 100, "local_id": 5, "name": "copy"}));
    server.then([Mode::StoreThenDrop]);
    c.execute("INSERT INTO t (name) VALUES ('five')", &[]).unwrap();
    wait_for(20, "the lookup reports two copies", || {
        events(&db, "t").iter().any(|e| e.0 == "failed" && e.2.contains("duplicate"))
    });
    assert_eq!(copies(&server, "t", 5), 2, "no third copy");
    assert!(remote_key(&db, "5").is_none(), "paired with one of two copies");
    server.insert("t", json!({"id": 101, "local_id": 1, "name": "n1"}));
    c.execute(
        "SELECT syncbridge.alter_link('t', '{\"direction\": \"both\", \"pull\": true, \"pull_interval\": 1, \
         \"next_pointer\": \"/links/next\"}')",
        &[],
    )
    .unwrap();
    wait_for(20, "the pull reports the copy of record 1", || {
        db.count("SELECT count(*) FROM syncbridge.duplicates WHERE link = 't' AND local_key = '1'") == 1
    });
    let dups: Vec<(String, Vec<String>)> = c
        .query("SELECT local_key, remote_keys FROM syncbridge.duplicates WHERE link = 't' ORDER BY local_key", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let first = remote_key(&db, "1").expect("row 1 is paired");
    assert_ne!(first, "101", "the pull does not pair the copy");
    let mut expected = vec![first, "101".to_string()];
    expected.sort();
    assert_eq!(dups, [("1".into(), expected), ("5".into(), vec!["100".into(), "5".into()])]);
    let inbound: Vec<(String, String)> = c
        .query(
            "SELECT status, reason FROM syncbridge.events WHERE link = 't' AND direction = 'inbound' \
             AND remote_key = '101'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        !inbound.is_empty() && inbound.iter().all(|e| e.0 != "ignored" && e.1.contains("duplicate")),
        "{inbound:?}"
    );
}

/// Point 3: the create's answer is lost and the row is edited while it is in flight; the
/// retry (whose attempt counter started again) still looks the record up first.
#[test]
fn a_create_edited_in_flight_is_looked_up_before_it_is_repeated() {
    let db = WorkerDb::take(47);
    let server = FaultServer::start();
    link(&db, "t", &server.url(), json!({}));
    server.then([Mode::StoreThenDropAfter(Duration::from_millis(1500))]);
    let mut c = db.admin();
    c.execute("INSERT INTO t (name) VALUES ('first')", &[]).unwrap();
    wait_for(20, "the create reached the remote", || server.records("t").len() == 1);
    c.execute("UPDATE t SET name = 'edited' WHERE id = 1", &[]).unwrap();
    wait_for(20, "the record is paired", || remote_key(&db, "1").is_some());
    wait_for(20, "the edit arrived", || server.records("t").iter().any(|r| r["name"] == "edited"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(copies(&server, "t", 1), 1, "two remote records for one row: {:?}", server.records("t"));
    assert_eq!(posts(&server, "/t"), 1);
    assert_eq!(remote_key(&db, "1").as_deref(), Some("1"));
}

/// Point 4: a 2xx create answer that is not JSON. The record is "created, id unknown"; the
/// next attempt looks it up and pairs it; an edit meanwhile does not create it again.
#[test]
fn a_create_answered_without_an_id_is_looked_up_not_repeated() {
    let db = WorkerDb::take(48);
    let server = FaultServer::start();
    link(&db, "t", &server.url(), json!({}));
    server.then([Mode::StoreThenAnswer { code: 201, body: "Created".into() }]);
    let mut c = db.admin();
    c.execute("INSERT INTO t (name) VALUES ('first')", &[]).unwrap();
    wait_for(20, "the answer is recorded", || !events(&db, "t").is_empty());
    c.execute("UPDATE t SET name = 'edited' WHERE id = 1", &[]).unwrap();
    wait_for(20, "the record is paired", || remote_key(&db, "1").is_some());
    wait_for(20, "the edit arrived", || server.records("t").iter().any(|r| r["name"] == "edited"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(copies(&server, "t", 1), 1, "created twice: {:?}", events(&db, "t"));
    assert_eq!(posts(&server, "/t"), 1);
    assert_eq!(remote_key(&db, "1").as_deref(), Some("1"));
    let first = &events(&db, "t")[0];
    assert_eq!((first.0.as_str(), first.2.contains("created, id unknown")), ("failed", true), "{first:?}");
}

/// Point 5: a broken remote answers every create with the same id, in batch mode and one by
/// one. The creates concerned fail with a reason, the rest of the batch settles,
/// max_attempts holds, and once the remote is mended (or the lookup finds the real ids)
/// everything is paired with its own record.
#[test]
fn creates_answered_with_one_id_fail_alone_and_recover() {
    let db = WorkerDb::take(49);
    let server = FaultServer::start();
    link(&db, "b", &server.url(), json!({"batch_url": "batch/b", "max_attempts": 3}));
    link(&db, "p", &server.url(), json!({"max_attempts": 3}));
    let mut c = db.admin();
    c.execute("INSERT INTO b (name) VALUES ('paired')", &[]).unwrap();
    wait_for(20, "one record paired", || remote_key(&db, "1").is_some());

    server.same_created_id(Some(1000));
    c.batch_execute(
        "SELECT syncbridge.pause_link('b');
         INSERT INTO b (name) SELECT 'n' || g FROM generate_series(2, 5) g;
         UPDATE b SET name = 'updated' WHERE id = 1;
         SELECT syncbridge.resume_link('b');
         INSERT INTO p (name) VALUES ('one'), ('two');",
    )
    .unwrap();
    wait_for(20, "the update of the same batch settles", || {
        server.records("b").iter().any(|r| r["name"] == "updated")
            && db.count(
                "SELECT count(*) FROM syncbridge.events WHERE link = 'b' AND local_key = '1' AND status = 'delivered'",
            ) == 2
    });
    wait_for(20, "the creates concerned fail with a reason", || {
        events(&db, "b").iter().filter(|e| e.0 == "failed" && e.2.contains("same id")).count() >= 4
    });
    wait_for(30, "the batch link's creates are all paired", || {
        db.count(
            "SELECT count(*) FROM syncbridge._record r JOIN syncbridge._link l ON l.id = r.link_id \
                  WHERE l.name = 'b' AND remote_key IS NOT NULL",
        ) == 5
    });
    server.same_created_id(None);
    wait_for(30, "the per-record link's creates are all paired", || {
        db.count(
            "SELECT count(*) FROM syncbridge._record r JOIN syncbridge._link l ON l.id = r.link_id \
                  WHERE l.name = 'p' AND remote_key IS NOT NULL",
        ) == 2
    });
    for (name, rows) in [("b", 5), ("p", 2)] {
        let records = server.records(name);
        assert_eq!(records.len(), rows, "{name}: {records:?}");
        let pairs: HashSet<(String, String)> = db
            .admin()
            .query(
                "SELECT r.local_key, r.remote_key FROM syncbridge._record r JOIN syncbridge._link l ON l.id = r.link_id \
                 WHERE l.name = $1",
                &[&name],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let remote: HashSet<(String, String)> =
            records.iter().map(|r| (r["local_id"].to_string(), r["id"].to_string())).collect();
        assert_eq!(pairs, remote, "{name}: each row paired with its own record");
    }
    let over: i64 =
        db.count("SELECT coalesce(max(attempt), 0)::bigint FROM syncbridge.events WHERE direction = 'outbound'");
    assert!(over <= 3, "attempt {over} of max_attempts 3");
    assert_eq!(db.count("SELECT count(*) FROM syncbridge._pending"), 0, "nothing left unsettled");
}
