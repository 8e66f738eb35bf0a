//! No silently lost edits (issue 13): a pulled record that failed once is fetched again and
//! applied on a later pull, though nobody edits it; rows whose keys were written under other
//! session settings (`TimeZone`, `DateStyle`) reach the remote as creates, and a row the worker
//! cannot read (jsonb nested too deep) fails as a record: never a DELETE, never dropped.

use serde_json::{json, Value};
use syncbridge_e2e::fault::FaultServer;
use syncbridge_e2e::remote::wait_for;
use syncbridge_e2e::worker::WorkerDb;

/// Tables keyed by a timestamptz and by a date, linked outbound to `url`.
fn key_tables(db: &WorkerDb, url: &str) {
    db.admin()
        .batch_execute(&format!(
            "CREATE TABLE at_tz (at timestamptz PRIMARY KEY, name text);
             CREATE TABLE on_day (day date PRIMARY KEY, name text);
             SELECT syncbridge.create_link('at_tz', 'at_tz', '{url}', 'at_tz', direction => 'outbound');
             SELECT syncbridge.create_link('on_day', 'on_day', '{url}', 'on_day', direction => 'outbound');"
        ))
        .unwrap();
}

fn deletes(server: &FaultServer) -> Vec<String> {
    server.requests().into_iter().filter(|r| r.method == "DELETE").map(|r| r.target).collect()
}

#[test]
fn keys_written_under_another_timezone_or_datestyle_reach_the_remote_as_creates() {
    let db = WorkerDb::take(36);
    let server = FaultServer::start();
    key_tables(&db, &server.url());
    let mut c = db.admin();
    c.batch_execute(
        "SET TimeZone = 'Asia/Tokyo';
         INSERT INTO at_tz VALUES ('2024-03-01 09:00:00+09', 'tokyo');
         SET DateStyle = 'SQL, DMY';
         INSERT INTO on_day VALUES ('2024-01-31', 'dmy'), ('2024-02-03', 'ambiguous');
         SET TimeZone = 'America/St_Johns';
         INSERT INTO at_tz VALUES ('2024-07-04 12:30:00.25+00', 'st johns');",
    )
    .unwrap();
    wait_for(20, "every row reaches the remote", || {
        server.records("at_tz").len() == 2 && server.records("on_day").len() == 2
    });
    wait_for(10, "every row is paired", || {
        db.count("SELECT count(*) FROM syncbridge._record WHERE remote_key IS NOT NULL") == 4
    });
    let names = |coll: &str| -> Vec<String> {
        let mut n: Vec<String> =
            server.records(coll).iter().map(|r| r["name"].as_str().unwrap_or_default().to_owned()).collect();
        n.sort();
        n
    };
    assert_eq!(names("at_tz"), ["st johns", "tokyo"]);
    assert_eq!(names("on_day"), ["ambiguous", "dmy"]);
    assert_eq!(deletes(&server), Vec::<String>::new(), "no DELETE for a row that exists");
    assert_eq!(db.events("at_tz", "outbound", "ignored") + db.events("on_day", "outbound", "ignored"), 0);
    // An edit under yet other settings updates the same remote record.
    c.batch_execute(
        "SET TimeZone = 'Pacific/Kiritimati'; SET DateStyle = 'German';
         UPDATE at_tz SET name = 'tokyo 2' WHERE name = 'tokyo';
         UPDATE on_day SET name = 'dmy 2' WHERE name = 'dmy';",
    )
    .unwrap();
    wait_for(20, "the edits update the same remote records", || {
        names("at_tz") == ["st johns", "tokyo 2"] && names("on_day") == ["ambiguous", "dmy 2"]
    });
    assert_eq!(server.records("at_tz").len() + server.records("on_day").len(), 4);
    assert_eq!(deletes(&server), Vec::<String>::new());
}

#[test]
fn a_row_the_worker_cannot_read_fails_as_a_record_and_is_not_deleted() {
    let db = WorkerDb::take(39);
    let server = FaultServer::start();
    let deep = (0..200).fold(json!(1), |inner, _| json!([inner]));
    db.admin()
        .batch_execute(&format!(
            "CREATE TABLE docs (id bigint PRIMARY KEY, body jsonb);
             SELECT syncbridge.create_link('docs', 'docs', '{}', 'docs', direction => 'outbound');",
            server.url()
        ))
        .unwrap();
    db.admin()
        .execute(
            "INSERT INTO docs VALUES (1, '{\"a\": 1}'), (2, $1::text::jsonb), (3, '{\"b\": 2}')",
            &[&deep.to_string()],
        )
        .unwrap();
    wait_for(20, "the readable rows reach the remote", || server.records("docs").len() == 2);
    wait_for(20, "the unreadable row fails as a record", || {
        db.count(
            "SELECT count(*) FROM syncbridge.events WHERE link = 'docs' AND direction = 'outbound' \
             AND status = 'failed' AND local_key = '2' AND reason LIKE '%nested%'",
        ) >= 1
    });
    assert_eq!(db.count("SELECT count(*) FROM syncbridge._pending WHERE local_key = '2'"), 1, "it is retried");
    assert_eq!(db.events("docs", "outbound", "ignored"), 0, "not taken as deleted");
    assert_eq!(deletes(&server), Vec::<String>::new());
    // Made readable, it goes out as a create.
    db.admin().execute("UPDATE docs SET body = '{\"c\": 3}' WHERE id = 2", &[]).unwrap();
    wait_for(30, "the row reaches the remote once readable", || server.records("docs").len() == 3);
    let bodies: Vec<Value> = server.records("docs").iter().map(|r| r["body"].clone()).collect();
    assert!(bodies.contains(&json!({"c": 3})));
}
