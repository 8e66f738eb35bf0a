//! The worker's log lines and `syncbridge.log_level`: at `debug` a batch is written with its
//! link and batch number, from the main thread (its settlement) and from the HTTP threads (its
//! requests, queued for the main thread); at `warning` only problems are written.
//!
//! The setting is server-wide, so both levels are checked in one test, one after the other,
//! each in a worker database taken after the change (its worker starts with the new value),
//! and only lines naming this test's own links count: the server log is shared.

use serde_json::{json, Value};
use syncbridge_e2e::fault::FaultServer;
use syncbridge_e2e::remote::wait_for;
use syncbridge_e2e::worker::WorkerDb;

/// An outbound link on the fault server (no pulls).
fn link(db: &WorkerDb, name: &str, url: &str, extra: Value) {
    db.outbound_link(name, url, json!({"pull": false}), extra);
}

/// Sets (or resets) `syncbridge.log_level` and waits until new backends see it, so that a
/// worker started from now on has it.
fn set_log_level(value: Option<&str>) {
    let mut admin = syncbridge_e2e::connect_as("postgres", "postgres");
    match value {
        Some(v) => admin.simple_query(&format!("ALTER SYSTEM SET syncbridge.log_level = '{v}'")).unwrap(),
        None => admin.simple_query("ALTER SYSTEM RESET syncbridge.log_level").unwrap(),
    };
    admin.execute("SELECT pg_reload_conf()", &[]).unwrap();
    let want = value.unwrap_or("warning");
    wait_for(10, &format!("syncbridge.log_level = {want} after the reload"), || {
        let mut fresh = syncbridge_e2e::connect_as("postgres", "postgres");
        let now: String = fresh.query_one("SHOW syncbridge.log_level", &[]).unwrap().get(0);
        now == want
    });
}

/// Puts the default back even when the test fails, for the tests that come after.
struct ResetLogLevel;

impl Drop for ResetLogLevel {
    fn drop(&mut self) {
        set_log_level(None);
    }
}

/// The server log's lines that name link `name`.
fn lines_of(name: &str) -> Vec<String> {
    let needle = format!("pg_syncbridge: link {name}: ");
    syncbridge_e2e::server_log().lines().filter(|l| l.contains(&needle)).map(str::to_owned).collect()
}

/// `LOG:  pg_syncbridge: link {name}: batch N: {rest}`: the batch number, if the line is one.
fn batch_line<'a>(line: &'a str, name: &str) -> Option<(u64, &'a str)> {
    let (_, after) = line.split_once(&format!("LOG:  pg_syncbridge: link {name}: batch "))?;
    let (seq, rest) = after.split_once(": ")?;
    Some((seq.parse().ok()?, rest))
}

#[test]
fn log_level_debug_names_link_and_batch_and_warning_writes_only_problems() {
    let _reset = ResetLogLevel;

    // debug: every batch, with its link and number.
    set_log_level(Some("debug"));
    {
        let db = WorkerDb::take(37);
        let server = FaultServer::start();
        link(&db, "traced_debug", &server.url(), json!({}));
        db.admin()
            .batch_execute("INSERT INTO traced_debug (name) SELECT 'n' || g FROM generate_series(1, 3) g")
            .unwrap();
        wait_for(30, "3 records at the remote", || server.records("traced_debug").len() == 3);
        wait_for(10, "the batch's settlement in the log, with link and batch", || {
            lines_of("traced_debug").iter().any(|l| {
                batch_line(l, "traced_debug")
                    .is_some_and(|(_, rest)| rest.ends_with("deliveries delivered, 0 failed") && rest.contains(" of "))
            })
        });
        // Written by the HTTP threads, reaching the log through the main thread.
        let request = format!("POST http://127.0.0.1:{}/traced_debug: HTTP 201 in ", server.port);
        wait_for(10, "a request line of the batch in the log", || {
            lines_of("traced_debug")
                .iter()
                .any(|l| batch_line(l, "traced_debug").is_some_and(|(_, r)| r.starts_with(&request)))
        });
    }

    // warning: nothing about a link that works, a warning for one that does not.
    set_log_level(None);
    let db = WorkerDb::take(38);
    let server = FaultServer::start();
    link(&db, "traced_quiet", &server.url(), json!({}));
    link(&db, "traced_warn", &server.url(), json!({"auth_secret": "traced_missing"}));
    db.admin().batch_execute("INSERT INTO traced_quiet (name) SELECT 'n' || g FROM generate_series(1, 3) g").unwrap();
    db.admin().execute("INSERT INTO traced_warn (name) VALUES ('x')", &[]).unwrap();
    wait_for(30, "3 records delivered", || db.events("traced_quiet", "outbound", "delivered") == 3);
    // A warning written after the delivery was settled: the rounds that would have written
    // (and drained) the quiet link's lines have passed.
    let warnings = || {
        lines_of("traced_warn")
            .iter()
            .filter(|l| l.contains("WARNING:  pg_syncbridge: link traced_warn: secret"))
            .count()
    };
    let before = warnings();
    wait_for(20, "the failing link's warning", || warnings() > before);
    let quiet = lines_of("traced_quiet");
    assert!(quiet.is_empty(), "lines of a working link at log_level warning: {quiet:?}");
}
