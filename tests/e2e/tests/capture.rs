//! Capture across transactions, sessions and roles, against a real cluster.

use syncbridge_e2e::{outbox_keys, sqlstate, TestDb, TestRole};

fn linked_db(test: &str) -> TestDb {
    let db = TestDb::new(test);
    db.admin()
        .batch_execute(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL, balance numeric(12,2) DEFAULT 0);
             SELECT syncbridge.create_link('crm', 'accounts', 'http://127.0.0.1:9', 'customers');",
        )
        .unwrap();
    db
}

#[test]
fn committed_edits_are_in_the_outbox_and_rolled_back_ones_are_not() {
    let db = linked_db("commit");
    let mut writer = db.admin();
    let mut reader = db.admin();

    let mut tx = writer.transaction().unwrap();
    tx.batch_execute("INSERT INTO accounts (id, name) VALUES (1, 'rolled back')").unwrap();
    assert!(outbox_keys(&mut reader, "crm").is_empty(), "uncommitted work must not be visible");
    tx.rollback().unwrap();
    assert!(outbox_keys(&mut reader, "crm").is_empty(), "a rolled-back edit is never sent");

    writer.batch_execute("INSERT INTO accounts (id, name) VALUES (2, 'kept')").unwrap();
    assert_eq!(outbox_keys(&mut reader, "crm"), vec![("upsert".into(), "2".into())]);
}

#[test]
fn the_origin_flag_never_outlives_its_transaction() {
    let db = linked_db("origin_scope");
    let mut c = db.admin();
    let show = |c: &mut postgres::Client| -> String { c.query_one("SHOW syncbridge.origin", &[]).unwrap().get(0) };

    // SET LOCAL, then commit.
    c.batch_execute(
        "BEGIN; SET LOCAL syncbridge.origin = 'crm'; INSERT INTO accounts (id, name) VALUES (1, 'a'); COMMIT;",
    )
    .unwrap();
    assert_eq!(show(&mut c), "");
    // A plain SET inside a transaction block is cleared at commit too.
    c.batch_execute("BEGIN; SET syncbridge.origin = 'crm'; COMMIT;").unwrap();
    assert_eq!(show(&mut c), "");
    // ... and at abort.
    c.batch_execute("BEGIN; SET syncbridge.origin = 'crm'; ROLLBACK;").unwrap();
    assert_eq!(show(&mut c), "");
    // An error inside the transaction aborts it and clears the flag.
    let err = c.batch_execute("BEGIN; SET LOCAL syncbridge.origin = 'crm'; SELECT 1/0;").unwrap_err();
    assert_eq!(sqlstate(&err), "22012");
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(show(&mut c), "");
    // Outside a transaction block it is refused with a hint.
    let err = c.batch_execute("SET syncbridge.origin = 'crm'").unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
    let text = format!("{:?}", err.as_db_error().unwrap());
    assert!(text.contains("SET LOCAL"), "the hint says what to do: {text}");

    // The write under the flag was not echoed, the next user edit is.
    c.batch_execute("UPDATE accounts SET name = 'b' WHERE id = 1").unwrap();
    assert_eq!(outbox_keys(&mut c, "crm"), vec![("upsert".into(), "1".into())]);
    let touch: String = c.query_one("SELECT _sync_last_touch FROM accounts WHERE id = 1", &[]).unwrap().get(0);
    assert_eq!(touch, "local");
}

#[test]
fn an_ordinary_role_cannot_hide_its_edits_but_a_granted_one_can_import() {
    let db = linked_db("origin_roles");
    let plain = TestRole::new(&db, "plain");
    let importer = TestRole::new(&db, "importer");
    db.admin()
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON accounts TO \"{p}\", \"{i}\";
             GRANT SET ON PARAMETER syncbridge.origin TO \"{i}\";",
            p = plain.name,
            i = importer.name
        ))
        .unwrap();

    let mut c = db.connect_as(&plain.name);
    let err = c.batch_execute("BEGIN; SET LOCAL syncbridge.origin = 'crm';").unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "permission denied: {err}");
    c.batch_execute("ROLLBACK").unwrap();
    // The role has no rights on syncbridge.*, yet its edit is captured.
    c.batch_execute("INSERT INTO accounts (id, name) VALUES (1, 'plain edit')").unwrap();
    let err = c.batch_execute("SELECT * FROM syncbridge.outbox").unwrap_err();
    assert_eq!(sqlstate(&err), "42501");

    let mut imp = db.connect_as(&importer.name);
    imp.batch_execute("BEGIN; SET LOCAL syncbridge.origin = 'crm'; INSERT INTO accounts (id, name) VALUES (2, 'bulk import'); COMMIT;")
        .unwrap();

    let mut admin = db.admin();
    assert_eq!(outbox_keys(&mut admin, "crm"), vec![("upsert".into(), "1".into())], "the import was not echoed");
    let touch: String = admin.query_one("SELECT _sync_last_touch FROM accounts WHERE id = 2", &[]).unwrap().get(0);
    assert_eq!(touch, "crm");
}

#[test]
fn concurrent_writers_are_all_captured() {
    let db = linked_db("concurrent");
    db.admin().batch_execute("INSERT INTO accounts (id, name) SELECT g, 'n' FROM generate_series(1, 200) g").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|w| {
            let name = db.name.clone();
            std::thread::spawn(move || {
                let mut c = syncbridge_e2e::connect_as(&name, "postgres");
                for i in 0..50 {
                    let id = (w * 50 + i + 1) as i64;
                    c.execute("UPDATE accounts SET balance = balance + 1 WHERE id = $1", &[&id]).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut admin = db.admin();
    let keys = outbox_keys(&mut admin, "crm");
    let updates: std::collections::BTreeSet<i64> = keys[200..].iter().map(|(_, k)| k.parse().unwrap()).collect();
    assert_eq!(keys.len(), 400);
    assert_eq!(updates, (1..=200).collect());
}

#[test]
fn pg_dump_keeps_links_and_sync_state() {
    let db = linked_db("dump");
    db.admin()
        .batch_execute(
            "INSERT INTO accounts (id, name) VALUES (1, 'a');
             INSERT INTO syncbridge._record (link_id, local_key, remote_key, created_by) SELECT id, '1', 'r-1', 'local' FROM syncbridge._link;",
        )
        .unwrap();
    let (host, port) = syncbridge_e2e::server();
    let out = std::process::Command::new(format!(
        "{}/pg_dump",
        std::env::var("SYNCBRIDGE_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into())
    ))
    .args(["-h", &host, "-p", &port.to_string(), "-U", "postgres", "--data-only", &db.name])
    .output()
    .expect("pg_dump runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dump = String::from_utf8_lossy(&out.stdout);
    for table in ["syncbridge._link", "syncbridge._record", "syncbridge.outbox"] {
        assert!(dump.contains(&format!("COPY {table} ")), "pg_dump must keep {table}");
    }
    assert!(dump.contains("r-1"), "the id map travels with the dump");
}
