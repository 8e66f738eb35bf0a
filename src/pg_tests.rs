//! In-database tests (`cargo pgrx test`): each runs in a transaction that is rolled back, so
//! they cover what happens inside one transaction. Behaviour across transactions, roles and
//! the background worker is covered by the end-to-end tests in `tests/`.

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::origin;
    use pgrx::prelude::*;

    fn setup_accounts() {
        Spi::run(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL, balance numeric(12,2) DEFAULT 0, \
                                    active boolean DEFAULT true, seen timestamptz, tags jsonb, born date, score float8);
             SELECT syncbridge.create_link('crm', 'accounts', 'http://127.0.0.1:9', 'customers');",
        )
        .unwrap();
    }

    /// The outbox as this transaction would commit it (tests never commit: the capture
    /// buffer is flushed by hand, as pre-commit would).
    fn outbox() -> Vec<(String, Vec<String>, Option<String>)> {
        crate::capture::buffer::flush();
        Spi::connect(|c| {
            c.select("SELECT op, keys, origin FROM syncbridge.outbox ORDER BY id", None, &[])
                .unwrap()
                .map(|row| {
                    (
                        row.get::<String>(1).unwrap().unwrap(),
                        row.get::<Vec<String>>(2).unwrap().unwrap(),
                        row.get::<String>(3).unwrap(),
                    )
                })
                .collect()
        })
    }

    #[pg_test]
    fn with_origin_sets_the_flag_and_puts_it_back() {
        assert_eq!(origin::current(), None);
        origin::with_origin("crm", || {
            assert_eq!(origin::current(), Some("crm"));
            let shown = Spi::get_one::<String>("SELECT current_setting('syncbridge.origin')").unwrap();
            assert_eq!(shown.as_deref(), Some("crm"));
            origin::with_origin("erp", || assert_eq!(origin::current(), Some("erp")));
            assert_eq!(origin::current(), Some("crm"));
        });
        assert_eq!(origin::current(), None);
    }

    #[pg_test]
    fn link_writes_are_not_echoed_but_user_edits_after_them_are() {
        setup_accounts();
        origin::with_origin("crm", || Spi::run("INSERT INTO accounts (id, name) VALUES (1, 'from crm')").unwrap());
        assert!(outbox().is_empty(), "a write under the link's own origin must not be enqueued");
        let touch = Spi::get_one::<String>("SELECT _sync_last_touch FROM accounts WHERE id = 1").unwrap();
        assert_eq!(touch.as_deref(), Some("crm"));

        Spi::run("UPDATE accounts SET name = 'edited locally' WHERE id = 1").unwrap();
        assert_eq!(outbox(), vec![("upsert".to_string(), vec!["1".to_string()], None)]);
        let touch = Spi::get_one::<String>("SELECT _sync_last_touch FROM accounts WHERE id = 1").unwrap();
        assert_eq!(touch.as_deref(), Some("local"));
    }

    #[pg_test]
    fn another_links_origin_is_captured_with_its_name() {
        setup_accounts();
        origin::with_origin("erp", || Spi::run("INSERT INTO accounts (id, name) VALUES (2, 'from erp')").unwrap());
        assert_eq!(outbox(), vec![("upsert".to_string(), vec!["2".to_string()], Some("erp".to_string()))]);
    }

    #[pg_test]
    fn the_stored_fingerprint_is_the_fingerprint_of_the_rows_json() {
        setup_accounts();
        Spi::run("SET LOCAL timezone = 'Asia/Kolkata'").unwrap();
        Spi::run(
            "INSERT INTO accounts VALUES (7, 'Ada', 12.50, true, '2024-05-01 12:00:00+02', '{\"b\": 1.0, \"a\": [1, 2]}', '1815-12-10', 0.1)",
        )
        .unwrap();
        let (stored, computed) = Spi::get_two::<String, String>(
            "SELECT _sync_fingerprint, syncbridge.fingerprint(to_jsonb(a) - '_sync_last_touch' - '_sync_fingerprint') FROM accounts a",
        )
        .unwrap();
        assert!(stored.is_some());
        assert_eq!(stored, computed, "trigger and SQL function must agree on a row's fingerprint");
    }

    #[pg_test]
    fn volatile_fields_do_not_count_and_unchanged_rows_are_not_enqueued() {
        setup_accounts();
        Spi::run("SELECT syncbridge.set_field('crm', 'seen', volatile => true)").unwrap();
        Spi::run("INSERT INTO accounts (id, name) VALUES (1, 'Ada')").unwrap();
        let before = Spi::get_one::<String>("SELECT _sync_fingerprint FROM accounts").unwrap();
        Spi::run("UPDATE accounts SET seen = now()").unwrap();
        Spi::run("UPDATE accounts SET name = name").unwrap();
        let after = Spi::get_one::<String>("SELECT _sync_fingerprint FROM accounts").unwrap();
        assert_eq!(before, after);
        assert_eq!(outbox().len(), 1, "only the insert is enqueued: {:?}", outbox());
    }

    #[pg_test]
    fn a_bulk_statement_is_split_into_outbox_rows_that_stay_inline() {
        setup_accounts();
        Spi::run("INSERT INTO accounts (id, name) SELECT g, 'n' || g FROM generate_series(1, 2500) g").unwrap();
        let rows = outbox();
        assert!(rows.len() > 1, "2,500 keys are more than one row holds");
        assert!(rows.iter().all(|r| !r.1.is_empty() && r.1.len() <= 1000));
        let all: Vec<i64> = rows.iter().flat_map(|r| r.1.iter().map(|k| k.parse::<i64>().unwrap())).collect();
        assert_eq!(all, (1..=2500).collect::<Vec<_>>(), "every key once, in order");
        // Under the TOAST threshold (about 2 kB), so no row is compressed or stored in pieces.
        let widest = Spi::get_one::<i32>("SELECT max(pg_column_size(o.*)) FROM syncbridge.outbox o").unwrap().unwrap();
        assert!(widest < 2032, "an outbox row of {widest} bytes would be toasted");
        let long_key = "k".repeat(3000);
        Spi::run(&format!("CREATE TABLE wide (k text PRIMARY KEY, v int); SELECT syncbridge.create_link('w', 'wide', 'http://127.0.0.1:9', 'w'); INSERT INTO wide VALUES ('{long_key}', 1), ('short', 2)")).unwrap();
        let rows = outbox();
        let wide: Vec<_> = rows.iter().filter(|r| r.1.iter().any(|k| k.starts_with('k') || k == "short")).collect();
        assert_eq!(
            wide.iter().map(|r| r.1.len()).collect::<Vec<_>>(),
            vec![1, 1],
            "a key longer than a row's room gets a row of its own"
        );
        assert_eq!(wide[0].1[0], long_key);
    }

    #[pg_test]
    fn the_trigger_fingerprints_numbers_as_sql_does() {
        Spi::run(
            "CREATE TABLE amounts (id int PRIMARY KEY, n numeric, at timestamptz, t text);
             SELECT syncbridge.create_link('amounts', 'amounts', 'http://127.0.0.1:9', 'amounts');
             INSERT INTO amounts (id, n, at, t) SELECT i, v::numeric, '2024-02-29 23:59:59.000120+05:30'::timestamptz + i * interval '1 day 1 second', 'x' || i
             FROM unnest(ARRAY['0', '-0.000', '1e-30', '-123456789012345678901234567890.5', 'NaN', '1.10', '-42', '1e20',
                               'Infinity', '-Infinity', '0.00010000', '99999999.99999999', '5e-1', '1234.5678']) WITH ORDINALITY AS x(v, i);
             UPDATE amounts SET n = n * 3 WHERE id % 2 = 0;",
        )
        .unwrap();
        let disagreeing = Spi::get_one::<i64>(
            "SELECT count(*) FROM amounts a
             WHERE _sync_fingerprint IS DISTINCT FROM syncbridge.fingerprint(to_jsonb(a) - '_sync_last_touch' - '_sync_fingerprint')",
        )
        .unwrap();
        assert_eq!(disagreeing, Some(0), "the stored numeric decoding must give the text output's fingerprint");
        let rows =
            Spi::get_one::<i64>("SELECT count(*) FROM amounts WHERE _sync_fingerprint <> repeat('0', 32)").unwrap();
        assert_eq!(rows, Some(14), "every row's fingerprint was filled in (over the column default)");
    }

    #[pg_test]
    fn an_index_added_to_the_outbox_is_kept_up_to_date() {
        setup_accounts();
        Spi::run("CREATE INDEX outbox_by_time ON syncbridge.outbox (enqueued_at, id)").unwrap();
        Spi::run("INSERT INTO accounts (id, name) SELECT g, 'n' || g FROM generate_series(1, 600) g").unwrap();
        crate::capture::buffer::flush();
        Spi::run("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off").unwrap();
        let through_index =
            Spi::get_one::<i64>("SELECT sum(cardinality(keys)) FROM syncbridge.outbox WHERE enqueued_at > '-infinity'")
                .unwrap();
        assert_eq!(through_index, Some(600));
    }

    #[pg_test]
    fn a_key_change_is_a_delete_and_an_upsert() {
        setup_accounts();
        Spi::run("INSERT INTO accounts (id, name) VALUES (1, 'Ada')").unwrap();
        Spi::run("UPDATE accounts SET id = 10 WHERE id = 1").unwrap();
        let rows = outbox();
        assert_eq!(rows[1], ("delete".to_string(), vec!["1".to_string()], None));
        assert_eq!(rows[2], ("upsert".to_string(), vec!["10".to_string()], None));
    }

    #[pg_test]
    fn a_relinked_table_reloads_its_configuration() {
        setup_accounts();
        Spi::run("INSERT INTO accounts (id, name) VALUES (1, 'Ada')").unwrap();
        // Watching only `balance` must take effect at once in this backend's trigger cache.
        Spi::run("SELECT syncbridge.set_field('crm', 'balance', watched => true)").unwrap();
        Spi::run("UPDATE accounts SET name = 'Ada L.'").unwrap();
        assert_eq!(outbox().len(), 1, "a change of an unwatched field is not sent");
        Spi::run("UPDATE accounts SET balance = 5").unwrap();
        assert_eq!(outbox().len(), 2);
    }

    #[pg_test]
    fn operations_keep_their_order_and_repeated_edits_coalesce() {
        setup_accounts();
        Spi::run("INSERT INTO accounts (id, name) VALUES (1, 'a')").unwrap();
        for i in 0..5 {
            Spi::run(&format!("UPDATE accounts SET balance = {i} + 1 WHERE id = 1")).unwrap();
        }
        Spi::run("DELETE FROM accounts WHERE id = 1").unwrap();
        Spi::run("INSERT INTO accounts (id, name) VALUES (1, 'again')").unwrap();
        let ops: Vec<(String, Vec<String>)> = outbox().into_iter().map(|(op, keys, _)| (op, keys)).collect();
        let one = || vec!["1".to_string()];
        assert_eq!(ops, vec![("upsert".into(), one()), ("delete".into(), one()), ("upsert".into(), one())]);
    }

    #[pg_test]
    fn a_rolled_back_savepoint_takes_its_keys_with_it() {
        setup_accounts();
        Spi::run("INSERT INTO accounts (id, name) VALUES (1, 'kept')").unwrap();
        // A failing statement inside a PL/pgSQL exception block runs in a subtransaction.
        Spi::run(
            "DO $$ BEGIN
                 INSERT INTO accounts (id, name) VALUES (2, 'rolled back');
                 INSERT INTO accounts (id, name) VALUES (1, 'duplicate key');
             EXCEPTION WHEN unique_violation THEN NULL;
             END $$",
        )
        .unwrap();
        Spi::run("INSERT INTO accounts (id, name) VALUES (3, 'kept too')").unwrap();
        let keys: Vec<String> = outbox().into_iter().flat_map(|(_, keys, _)| keys).collect();
        assert_eq!(keys, vec!["1", "3"]);
    }

    #[pg_test]
    fn partitions_are_captured_with_their_own_layout() {
        Spi::run(
            "CREATE TABLE events (id bigint PRIMARY KEY, payload text, amount numeric) PARTITION BY RANGE (id);
             CREATE TABLE events_low (extra int, amount numeric, payload text, id bigint NOT NULL);
             ALTER TABLE events_low DROP COLUMN extra;
             ALTER TABLE events ATTACH PARTITION events_low FOR VALUES FROM (0) TO (100);
             CREATE TABLE events_high PARTITION OF events FOR VALUES FROM (100) TO (1000);
             SELECT syncbridge.create_link('ev', 'events', 'http://127.0.0.1:9', 'events');
             INSERT INTO events VALUES (1, 'low', 1.50), (500, 'high', 2);
             UPDATE events SET amount = amount * 2;",
        )
        .unwrap();
        let keys: Vec<Vec<String>> = outbox().into_iter().map(|(_, keys, _)| keys).collect();
        assert_eq!(keys.concat(), vec!["1", "500", "1", "500"]);
        let agree = Spi::get_one::<bool>(
            "SELECT bool_and(_sync_fingerprint = syncbridge.fingerprint(to_jsonb(e) - '_sync_last_touch' - '_sync_fingerprint')) FROM events e",
        )
        .unwrap();
        assert_eq!(agree, Some(true), "each partition's trigger reads its own column layout");
    }

    #[pg_test]
    fn fingerprints_do_not_depend_on_display_settings() {
        Spi::run(
            "CREATE TABLE t (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz, iv interval, f float8, r real, b bytea);
             SELECT syncbridge.create_link('l', 't', 'http://127.0.0.1:9', 't');
             SET LOCAL DateStyle = 'SQL, DMY'; SET LOCAL extra_float_digits = 0; SET LOCAL IntervalStyle = 'postgres_verbose';
             SET LOCAL bytea_output = 'escape'; SET LOCAL timezone = 'America/New_York';
             INSERT INTO t VALUES (1, '2024-05-01', '2024-05-01 12:00:00.5', '2024-05-01 12:00:00+02', '1 year 2 days 3 hours',
                                   0.1, 0.1, '\\x0102');",
        )
        .unwrap();
        let before = Spi::get_one::<String>("SELECT _sync_fingerprint FROM t").unwrap();
        Spi::run(
            "SET LOCAL DateStyle = 'ISO, MDY'; SET LOCAL extra_float_digits = 3; SET LOCAL IntervalStyle = 'iso_8601';
             SET LOCAL bytea_output = 'hex'; SET LOCAL timezone = 'UTC';
             UPDATE t SET d = d, ts = ts, tz = tz, iv = iv, f = f, r = r, b = b",
        )
        .unwrap();
        let after = Spi::get_one::<String>("SELECT _sync_fingerprint FROM t").unwrap();
        assert_eq!(before, after);
        assert_eq!(outbox().len(), 1, "only the insert: {:?}", outbox());
        // Apart from the interval (whose JSON text follows IntervalStyle), the row fingerprint is
        // the fingerprint of the row's JSON.
        let agree = Spi::get_one::<bool>(
            "SELECT _sync_fingerprint = syncbridge.fingerprint(to_jsonb(t) - '_sync_last_touch' - '_sync_fingerprint') FROM t",
        )
        .unwrap();
        assert_eq!(agree, Some(true), "under IntervalStyle iso_8601 the interval agrees too");
    }

    #[pg_test]
    fn drop_link_leaves_the_table_as_it_was() {
        setup_accounts();
        Spi::run("SELECT syncbridge.drop_link('crm')").unwrap();
        let left = Spi::get_one::<i64>(
            "SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'accounts'::regclass) + \
                    (SELECT count(*) FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname LIKE '\\_sync\\_%' AND NOT attisdropped)",
        )
        .unwrap();
        assert_eq!(left, Some(0));
        Spi::run("INSERT INTO accounts (id, name) VALUES (1, 'Ada')").unwrap();
        assert!(outbox().is_empty());
    }

    fn crm() -> crate::catalog::link::LinkRow {
        crate::catalog::link::LinkRow::load_all().unwrap().into_iter().find(|l| l.name == "crm").unwrap()
    }

    /// Claims, then settles every delivery with the same answer (as the worker would after
    /// the network).
    fn round(status: u16, body: &str) -> Vec<crate::outbound::plan::Delivery> {
        use crate::logic::delivery::Answer;
        use crate::outbound::{claim, plan::Sent, settle};
        crate::capture::buffer::flush();
        let link = crm();
        let deliveries = claim::claim(&link, 100).unwrap();
        let sent = deliveries
            .iter()
            .map(|d| Sent {
                delivery: d.clone(),
                answer: Answer { status: Some(status), body: body.into(), ..Default::default() },
                found_id: None,
                method: "TEST",
                duplicates: Vec::new(),
                seen: None,
            })
            .collect();
        settle::settle(&link, sent);
        deliveries
    }

    /// A round trip of record 1 of `crm` without a user edit: the remote sends it back changed
    /// (stamped `n`), the link writes it, and that write travels out again (on links without
    /// the context guard). Returns how many deliveries it made.
    fn round_trip(n: usize) -> usize {
        Spi::run("UPDATE syncbridge._record SET in_at = clock_timestamp() + interval '1 hour'").unwrap();
        origin::with_origin("crm", || {
            Spi::run_with_args("UPDATE accounts SET name = $1 WHERE id = 1", &[format!("stamp {n}").into()]).unwrap()
        });
        round(200, "{}").len()
    }

    fn status_of(key: &str) -> Option<String> {
        Spi::get_one_with_args::<String>(
            "SELECT status FROM syncbridge.events WHERE local_key = $1 ORDER BY id DESC LIMIT 1",
            &[key.into()],
        )
        .unwrap()
    }

    #[pg_test]
    fn a_delivery_creates_then_updates_and_the_same_content_is_blocked() {
        use crate::outbound::plan::Action;
        setup_accounts();
        Spi::run("INSERT INTO accounts (id, name) VALUES (1, 'Ada')").unwrap();
        let first = round(201, r#"{"id": "c-1"}"#);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].action, Action::Create);
        assert_eq!(first[0].body.as_ref().unwrap().get("name"), Some(&serde_json::json!("Ada")));
        assert!(first[0].body.as_ref().unwrap().get("id").is_none(), "the local id is not the remote's id");
        let remote = Spi::get_one::<String>("SELECT remote_key FROM syncbridge._record WHERE local_key = '1'").unwrap();
        assert_eq!(remote.as_deref(), Some("c-1"));

        Spi::run("UPDATE accounts SET name = 'Ada L.' WHERE id = 1").unwrap();
        let second = round(200, "{}");
        assert_eq!((second[0].action, second[0].remote_key.as_deref()), (Action::Update, Some("c-1")));

        // Back and forth to the delivered content: the fingerprint guard stops it.
        Spi::run("UPDATE accounts SET name = 'x' WHERE id = 1; UPDATE accounts SET name = 'Ada L.' WHERE id = 1")
            .unwrap();
        assert!(round(200, "{}").is_empty());
        assert_eq!(status_of("1").as_deref(), Some("blocked"));
        let pending = Spi::get_one::<i64>("SELECT count(*) FROM syncbridge._pending").unwrap();
        assert_eq!(pending, Some(0), "nothing is left waiting");
    }

    #[pg_test]
    fn a_failure_is_retried_later_and_a_refusal_is_dead_lettered() {
        setup_accounts();
        Spi::run("INSERT INTO accounts (id, name) VALUES (1, 'Ada'), (2, 'Bob')").unwrap();
        round(503, "busy");
        let retry = Spi::get_one::<bool>(
            "SELECT bool_and(NOT failed AND NOT in_flight AND next_attempt > now() AND last_error = 'HTTP 503: busy') FROM syncbridge._pending",
        )
        .unwrap();
        assert_eq!(retry, Some(true));
        assert!(round(201, r#"{"id": 9}"#).is_empty(), "not due yet");
        Spi::run("UPDATE syncbridge._pending SET next_attempt = now()").unwrap();
        round(422, r#"{"message": "name is taken"}"#);
        let dead = Spi::get_one::<i64>(
            "SELECT count(*) FROM syncbridge._pending WHERE failed AND last_error = 'HTTP 422: name is taken'",
        )
        .unwrap();
        assert_eq!(dead, Some(2));
        let attempts = Spi::get_one::<i32>("SELECT max(attempt) FROM syncbridge.events").unwrap();
        assert_eq!(attempts, Some(2));
    }

    #[pg_test]
    fn the_loop_detector_quarantines_a_record_that_keeps_coming_back() {
        setup_accounts();
        Spi::run("SELECT syncbridge.alter_link('crm', '{\"detector_hops\": 4}')").unwrap();
        Spi::run("INSERT INTO accounts (id, name) VALUES (1, 'Ada')").unwrap();
        round(201, r#"{"id": "c-1"}"#);
        // The remote sends it back changed, the link writes it, and that write travels out
        // again (no context guard here): a round trip without a user edit, again and again.
        Spi::run("SELECT syncbridge.alter_link('crm', '{\"loop_guards\": [\"fingerprint\"]}')").unwrap();
        let mut trips = 0;
        while status_of("1").as_deref() != Some("quarantined") {
            trips += 1;
            assert!(trips <= 5, "never quarantined");
            round_trip(trips);
        }
        assert_eq!(trips, 3, "the third round trip makes 6 hops > 4");
        let q = Spi::get_one::<String>("SELECT reason FROM syncbridge.quarantine").unwrap().unwrap();
        assert!(q.contains("hops within 600 s"), "{q}");
        // Quarantined: further link writes stay home; a user edit lets it go again.
        origin::with_origin("crm", || Spi::run("UPDATE accounts SET name = 'stamp 9' WHERE id = 1").unwrap());
        assert!(round(200, "{}").is_empty());
        Spi::run("UPDATE accounts SET name = 'fixed by a user' WHERE id = 1").unwrap();
        assert_eq!(round(200, "{}").len(), 1);
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM syncbridge.quarantine").unwrap(), Some(0));
    }

    #[pg_test]
    fn the_detector_counts_only_hops_within_its_window_and_can_be_turned_off() {
        setup_accounts();
        Spi::run("SELECT syncbridge.alter_link('crm', '{\"detector_hops\": 4, \"detector_window\": 600}')").unwrap();
        Spi::run("INSERT INTO accounts (id, name) VALUES (1, 'Ada')").unwrap();
        round(201, r#"{"id": "c-1"}"#);
        Spi::run("SELECT syncbridge.alter_link('crm', '{\"loop_guards\": [\"fingerprint\"]}')").unwrap();
        let quarantined = || Spi::get_one::<i64>("SELECT count(*) FROM syncbridge.quarantine").unwrap();
        // Six trips, each one's hops moved an hour back before the next: outside the window,
        // they are not a loop.
        for n in 1..=6 {
            assert_eq!(round_trip(n), 1, "trip {n} was not delivered");
            Spi::run("UPDATE syncbridge._record SET hop_times = ARRAY(SELECT h - 3600 FROM unnest(hop_times) h)")
                .unwrap();
        }
        assert_eq!(quarantined(), Some(0));
        // Within the window, with the detector off: six more trips, still not quarantined.
        Spi::run("SELECT syncbridge.alter_link('crm', '{\"detector\": false}')").unwrap();
        for n in 7..=12 {
            assert_eq!(round_trip(n), 1, "trip {n} was not delivered");
        }
        assert_eq!(quarantined(), Some(0));
        assert_eq!(status_of("1").as_deref(), Some("delivered"));
        // On again: the next trips within the window trip it.
        Spi::run("SELECT syncbridge.alter_link('crm', '{\"detector\": null}')").unwrap();
        let mut n = 13;
        while quarantined() == Some(0) {
            assert!(n < 20, "the detector did not come back");
            round_trip(n);
            n += 1;
        }
    }

    #[pg_test]
    fn a_large_batch_with_a_bad_record_and_a_repeated_key_applies_the_rest_in_order() {
        Spi::run(
            "CREATE TABLE people (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text, age int);
             SELECT syncbridge.create_link('people', 'people', 'http://127.0.0.1:9', 'people');",
        )
        .unwrap();
        let records: Vec<serde_json::Value> = (1..=100)
            .map(|i| match i {
                37 => serde_json::json!({"id": "r37", "name": "n37", "age": "old"}),
                60 => serde_json::json!({"id": "r10", "name": "second", "age": 60}),
                _ => serde_json::json!({"id": format!("r{i}"), "name": format!("n{i}"), "age": i}),
            })
            .collect();
        let rows = crate::inbound::apply_records("people", serde_json::Value::Array(records)).unwrap();
        assert_eq!(rows.len(), 100);
        for (i, row) in rows.iter().enumerate() {
            let n = i + 1;
            let expected_key = if n == 60 { "r10".to_string() } else { format!("r{n}") };
            assert_eq!(row.0.as_deref(), Some(expected_key.as_str()), "row {n} out of order");
            if n == 37 {
                assert_eq!(row.2, "failed");
                assert!(row.3.as_deref().unwrap_or_default().contains("age"), "{:?}", row.3);
            } else {
                assert_eq!(row.2, "delivered", "row {n}: {:?}", row.3);
            }
        }
        // The repeated key updated the row of its first record, after it.
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM people").unwrap(), Some(98));
        assert_eq!(
            Spi::get_one::<String>("SELECT name FROM people WHERE age = 60").unwrap().as_deref(),
            Some("second")
        );
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM people WHERE name = 'n10'").unwrap(), Some(0));
    }

    /// Documents that cover every jsonb shape: nesting, empty containers, each scalar kind,
    /// numbers whose text matters, escapes and non-ASCII text, lone scalars.
    const JSON_DOCUMENTS: &[&str] = &[
        r#"{"id": 1, "name": "Ada", "tags": ["a", "b"], "nested": {"deep": [1, {"x": null}]}}"#,
        r#"{"price": 1.50, "big": 123456789012345678901234567890, "neg": -0.001, "exp": 1e3, "zero": 0}"#,
        r#"{"t": true, "f": false, "n": null, "empty_object": {}, "empty_array": []}"#,
        r#"{"quote": "say \"hi\"\n\ttab", "unicode": "Łódź 日本 \u00e9", "slash": "a\\b"}"#,
        r#"[1, "two", [3], {"four": 4}]"#,
        r#""just a string""#,
        "42.10",
        "true",
        "null",
        "[]",
    ];

    #[pg_test]
    fn jsonb_is_read_as_its_text_would_parse() {
        for doc in JSON_DOCUMENTS {
            let (binary, text) = Spi::get_two_with_args::<crate::spi::jsonb::Jsonb, String>(
                "SELECT $1::jsonb, $1::jsonb::text",
                &[(*doc).into()],
            )
            .unwrap();
            let through_text: serde_json::Value = serde_json::from_str(&text.unwrap()).unwrap();
            assert_eq!(binary.unwrap().0, through_text, "{doc}");
        }
    }

    #[pg_test]
    fn jsonb_is_written_as_its_text_would_store() {
        for doc in JSON_DOCUMENTS {
            let value: serde_json::Value = serde_json::from_str(doc).unwrap();
            let same = Spi::get_one_with_args::<bool>(
                "SELECT $1 = $2::jsonb AND $1::text = $2::jsonb::text",
                &[crate::spi::jsonb::Jsonb(value).into(), (*doc).into()],
            )
            .unwrap();
            assert_eq!(same, Some(true), "{doc}");
        }
    }

    #[pg_test]
    fn jsonb_nested_deeper_than_json_text_reads_is_refused() {
        let deep = |levels: usize| format!("SELECT ('{}' || '{}')::jsonb", "[".repeat(levels), "]".repeat(levels));
        let ok = Spi::get_one::<crate::spi::jsonb::Jsonb>(&deep(128)).unwrap().unwrap();
        assert!(ok.0.is_array());
        let refused =
            PgTryBuilder::new(|| Spi::get_one::<crate::spi::jsonb::Jsonb>(&deep(129)).map(|_| "read").unwrap())
                .catch_others(|e| match e {
                    pgrx::pg_sys::panic::CaughtError::ErrorReport(r) => {
                        assert!(r.message().contains("nested more than 128 levels"), "{}", r.message());
                        "refused"
                    }
                    other => panic!("{other:?}"),
                })
                .execute();
        assert_eq!(refused, "refused");
    }

    #[pg_test]
    fn a_pulled_record_with_a_nul_character_fails_alone() {
        Spi::run(
            "CREATE TABLE people (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text);
             SELECT syncbridge.create_link('people', 'people', 'http://127.0.0.1:9', 'people');",
        )
        .unwrap();
        // apply_inbound's jsonb argument cannot hold a NUL (jsonb_in refuses \u0000), but a
        // pulled page parsed from the remote's text can.
        let records = serde_json::json!([{"id": "r1", "name": "Ada"}, {"id": "r2", "name": "A\u{0}da"}]);
        let rows = crate::inbound::apply_records("people", records).unwrap();
        assert_eq!(rows[0].2, "delivered");
        assert_eq!(rows[1].2, "failed");
        let reason = rows[1].3.clone().unwrap_or_default();
        assert!(reason.contains("\\u0000"), "{reason}");
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM people").unwrap(), Some(1));
    }
}
