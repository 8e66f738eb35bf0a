//! A randomized two-sided run (issue 13), alone in its binary because it SIGKILLs the worker
//! (the postmaster then restarts every backend of the cluster).
//!
//! A table and a collection of the in-process remote are linked both ways, the way a user
//! would link them to a remote that stamps `updated_at` on every write and answers
//! "changed since" pulls: `cursor_param`/`cursor_field` for the pull, `remote_time_field` and
//! `local_time_column` for the contention policy, the local time kept by a trigger and not
//! synced. For a few seconds, seeded random edits come from both sides at a steady pace:
//! local sessions insert rows and update single fields with plain SQL, the remote's own users
//! edit fields of its records; meanwhile the remote answers bursts of 500, 429 with
//! Retry-After, and slow answers (some past the link's timeout, after the write is done), and
//! the worker is SIGKILLed and restarts. Every edit writes a value unique to the run
//! (`s<seed>-e<n>`, or `n` in an integer field), so each final value names the edit that wrote
//! it. Then the faults and edits stop, the sync settles, and a checker fails the run on:
//!
//! - a record or field that differs between the two sides, a record missing on either side;
//! - a record that exists twice on the remote (same local id);
//! - a write after quiescence (a write request to the remote, or a changed local row, during a
//!   final observation window);
//! - a lost edit: per record and field, the final value must be that of the later of the last
//!   local and the last remote edit of the field (a field changed on one side only keeps that
//!   side's edit), unless the two were less than `TOLERANCE_US` apart (either is fine), or the
//!   final value is the earlier one and `syncbridge.conflicts` has a row for that record and
//!   field that holds the later value (a decided, recorded conflict). A final value that is
//!   neither is lost. The times compared are those the sync can see: the local row's
//!   `updated_at` as the edit's transaction stored it, the remote's stamp of the edit.
//!
//! Length and variety from the environment: `SYNCBRIDGE_RANDOM_SECONDS` (seconds of edits per
//! run, default 15), `SYNCBRIDGE_RANDOM_SEEDS` (comma list, default 13),
//! `SYNCBRIDGE_RANDOM_POLICIES` (default `merge,last_write_wins`), `SYNCBRIDGE_RANDOM_MODES`
//! (the links' `before_update`, default `if_match`; `pull` leaves a window between its pull
//! and the update, see docs/concepts.md). scripts/randomized.sh runs
//! the long variant.

use postgres::Client;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use syncbridge_e2e::fault::{parse_rfc3339_micros, rfc3339_micros, FaultServer, Mode};
use syncbridge_e2e::worker::WorkerDb;

/// Edits of the same field closer than this (in microseconds) are not judged: either value
/// may end up on both sides.
const TOLERANCE_US: i64 = 200_000;
/// Time between two steps of the edit loop.
const PACE: Duration = Duration::from_millis(50);
/// The synced fields of a record: name, and whether it holds text (else an integer).
const FIELDS: [(&str, bool); 4] = [("name", true), ("note", true), ("qty", false), ("prio", false)];
const LINK: &str = "items";

/// splitmix64: a small seeded generator, so a run can be repeated from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Local,
    Remote,
}

/// One edit: who made it, of which record (its local id) and field, the value, and the time
/// the sync sees for it (microseconds since the epoch).
#[derive(Debug, Clone, PartialEq)]
struct Edit {
    side: Side,
    record: i64,
    field: &'static str,
    value: Value,
    at_us: i64,
}

struct Config {
    seconds: u64,
    seeds: Vec<u64>,
    policies: Vec<String>,
    /// `before_update` modes (`SYNCBRIDGE_RANDOM_MODES`, default `if_match`).
    modes: Vec<String>,
}

impl Config {
    fn from_env() -> Self {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let list = |text: String| -> Vec<String> {
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
        };
        Self {
            seconds: var("SYNCBRIDGE_RANDOM_SECONDS", "15").parse().expect("SYNCBRIDGE_RANDOM_SECONDS: seconds"),
            seeds: list(var("SYNCBRIDGE_RANDOM_SEEDS", "13"))
                .iter()
                .map(|s| s.parse().expect("SYNCBRIDGE_RANDOM_SEEDS: comma-separated numbers"))
                .collect(),
            policies: list(var("SYNCBRIDGE_RANDOM_POLICIES", "merge,last_write_wins")),
            modes: list(var("SYNCBRIDGE_RANDOM_MODES", "if_match")),
        }
    }
}

/// What one run found.
#[derive(Default)]
struct Report {
    seed: u64,
    policy: String,
    seconds: u64,
    local_edits: usize,
    remote_edits: usize,
    faults: BTreeMap<&'static str, usize>,
    conflicts: usize,
    quiescent: bool,
    differences: Vec<String>,
    duplicates: Vec<String>,
    writes_after_quiescence: Vec<String>,
    /// Writes the remote carried out for the worker, and rows the worker wrote locally.
    remote_writes: usize,
    local_writes: i64,
    /// (record, field, expected, final)
    lost: Vec<(i64, String, String, String)>,
    /// What happened to the field of the first lost edits, in time order.
    timelines: Vec<String>,
    judged: usize,
    within_tolerance: usize,
    settled_by_conflict: usize,
}

impl Report {
    fn converged(&self) -> bool {
        self.quiescent && self.differences.is_empty()
    }

    fn passed(&self) -> bool {
        self.converged()
            && self.duplicates.is_empty()
            && self.writes_after_quiescence.is_empty()
            && self.lost.is_empty()
    }

    fn summary(&self) -> String {
        let edits = (self.local_edits + self.remote_edits).max(1);
        let mut out = format!(
            "randomized: seed {} policy {} seconds {}: edits local {} remote {}; faults {:?}; \
             hops per edit {:.2} (remote writes {} + local writes {} by the worker); conflicts rows {}; \
             fields judged {} ({} kept the earlier edit within {} ms, {} by a recorded conflict); lost edits {} \
             ({} local, {} remote); \
             duplicates {}; writes after quiescence {}; converged {}",
            self.seed,
            self.policy,
            self.seconds,
            self.local_edits,
            self.remote_edits,
            self.faults,
            (self.remote_writes as f64 + self.local_writes as f64) / edits as f64,
            self.remote_writes,
            self.local_writes,
            self.conflicts,
            self.judged,
            self.within_tolerance,
            TOLERANCE_US / 1000,
            self.settled_by_conflict,
            self.lost.len(),
            self.lost.iter().filter(|l| l.2.ends_with("(local edit)")).count(),
            self.lost.iter().filter(|l| l.2.ends_with("(remote edit)")).count(),
            self.duplicates.len(),
            self.writes_after_quiescence.len(),
            if self.converged() { "yes" } else { "no" },
        );
        for (record, field, expected, found) in self.lost.iter().take(5) {
            out += &format!("\n  lost edit: record {record} field {field}: expected {expected}, final {found}");
        }
        for t in &self.timelines {
            out += &format!("\n{t}");
        }
        for d in self.differences.iter().take(5) {
            out += &format!("\n  differs: {d}");
        }
        for d in self.duplicates.iter().take(5) {
            out += &format!("\n  duplicate: {d}");
        }
        for w in self.writes_after_quiescence.iter().take(5) {
            out += &format!("\n  write after quiescence: {w}");
        }
        if !self.quiescent {
            out += "\n  the sync did not settle (outbox or _pending never empty)";
        }
        out
    }
}

#[test]
fn remote_stamps_read_back_as_the_same_instant() {
    assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(rfc3339_micros(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
    assert_eq!(rfc3339_micros(1_796_083_199_999_999), "2026-11-30T23:59:59.999999Z");
    for us in [0, 951_782_400_000_001, 1_796_083_199_999_999, 4_102_444_800_123_456] {
        assert_eq!(parse_rfc3339_micros(&rfc3339_micros(us)), Some(us));
    }
    assert_eq!(parse_rfc3339_micros("2026-11-30T23:59:59Z"), None);
}

#[test]
fn seeded_edits_on_both_sides_with_faults_lose_no_edit() {
    let config = Config::from_env();
    let mut reports = Vec::new();
    for mode in &config.modes {
        for policy in &config.policies {
            for &seed in &config.seeds {
                let n = 31 + (reports.len() % 4) as u32;
                let report = run(n, seed, policy, mode, config.seconds);
                eprintln!("{}", report.summary());
                reports.push(report);
            }
        }
    }
    let failed: Vec<String> = reports.iter().filter(|r| !r.passed()).map(Report::summary).collect();
    assert!(failed.is_empty(), "{} of {} runs failed:\n{}", failed.len(), reports.len(), failed.join("\n"));
}

/// The link's settings, as a user would set them for a remote like this one, seeing remote
/// changes before an update by `mode` (`before_update`).
fn settings(mode: &str) -> Value {
    json!({
        "before_update": mode,
        "local_id_field": "local_id",
        "pull_interval": 1,
        "cursor_param": "since",
        "cursor_field": "updated_at",
        "remote_time_field": "updated_at",
        "local_time_column": "updated_at",
        "timeout_ms": 3000,
    })
}

fn setup(db: &WorkerDb, url: &str, policy: &str, mode: &str) {
    db.admin()
        .batch_execute(&format!(
            "CREATE TABLE items (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text, note text,
                                 qty int, prio int, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
             CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
             CREATE TRIGGER touch BEFORE INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION touch();
             -- The worker's writes of the table, to count its hops.
             CREATE TABLE worker_writes (id bigint, at timestamptz NOT NULL DEFAULT clock_timestamp());
             CREATE FUNCTION count_worker_writes() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF (SELECT backend_type FROM pg_stat_activity WHERE pid = pg_backend_pid()) = 'pg_syncbridge' THEN
                     INSERT INTO public.worker_writes (id) VALUES (NEW.id);
                 END IF;
                 RETURN NULL;
             END $$;
             CREATE TRIGGER count_worker_writes AFTER INSERT OR UPDATE ON items
                 FOR EACH ROW EXECUTE FUNCTION count_worker_writes();
             SELECT syncbridge.create_link('{LINK}', 'items', '{url}', 'items', direction => 'both', contention => '{policy}');
             SELECT syncbridge.set_field('{LINK}', 'updated_at', synced => false);
             SELECT syncbridge.alter_link('{LINK}', '{}');",
            settings(mode)
        ))
        .unwrap();
}

/// A connection to the database that survives the worker's kill (which restarts every backend).
struct Session<'a> {
    db: &'a WorkerDb,
    client: Client,
}

impl<'a> Session<'a> {
    fn new(db: &'a WorkerDb) -> Self {
        Self { db, client: db.admin() }
    }

    fn reconnect(&mut self) {
        self.client = self.db.admin();
    }

    /// Inserts a row with these values; its id and the time the row holds.
    fn insert(&mut self, values: &[Value]) -> (i64, i64) {
        let text = |i: usize| values[i].as_str().map(str::to_owned);
        let int = |i: usize| values[i].as_i64().map(|n| n as i32);
        let row = self
            .client
            .query_one(
                "INSERT INTO items (name, note, qty, prio) VALUES ($1, $2, $3, $4)
                 RETURNING id, (extract(epoch FROM updated_at) * 1000000)::bigint",
                &[&text(0), &text(1), &int(2), &int(3)],
            )
            .unwrap();
        (row.get(0), row.get(1))
    }

    /// Sets one field of a row; the time the row holds afterwards.
    fn update(&mut self, id: i64, field: &str, value: &Value) -> i64 {
        // `field` is one of FIELDS, never outside text.
        let sql = format!(
            "UPDATE items SET {field} = $1 WHERE id = $2 RETURNING (extract(epoch FROM updated_at) * 1000000)::bigint"
        );
        let row = match value {
            Value::String(s) => self.client.query_one(&sql, &[s, &id]),
            v => self.client.query_one(&sql, &[&(v.as_i64().unwrap() as i32), &id]),
        };
        row.unwrap().get(0)
    }
}

/// The local id a remote record names, if any.
fn local_id(record: &Value) -> Option<i64> {
    match &record["local_id"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A local session inserts a row with a fresh value in every field.
fn insert(
    session: &mut Session<'_>,
    rows: &mut Vec<i64>,
    edits: &mut Vec<Edit>,
    value_of: &mut dyn FnMut(bool) -> Value,
) {
    let values: Vec<Value> = FIELDS.iter().map(|(_, text)| value_of(*text)).collect();
    let (id, at_us) = session.insert(&values);
    rows.push(id);
    for ((field, _), value) in FIELDS.iter().zip(values) {
        edits.push(Edit { side: Side::Local, record: id, field, value, at_us });
    }
}

/// A fault that lasts until a given time.
enum Fault {
    ServerErrors,
    TooMany,
    Slow,
    Kill,
}

fn run(n: u32, seed: u64, policy: &str, mode: &str, seconds: u64) -> Report {
    let db = WorkerDb::take(n);
    let server = FaultServer::start();
    server.stamp("updated_at");
    server.cursor("since", "updated_at");
    // A remote that gives versions (ETag) and honours If-Match, as if_match needs.
    server.etags();
    setup(&db, &server.url(), policy, mode);
    let policy = format!("{policy} before_update {mode}");
    let mut report = Report { seed, policy, seconds, ..Report::default() };
    let mut rng = Rng(seed);
    let mut edits: Vec<Edit> = Vec::new();
    let mut counter = 0u64;
    let mut value_of = |text: bool| {
        counter += 1;
        if text {
            json!(format!("s{seed}-e{counter}"))
        } else {
            json!(counter)
        }
    };
    let mut session = Session::new(&db);
    let mut rows: Vec<i64> = Vec::new();
    for _ in 0..6 {
        insert(&mut session, &mut rows, &mut edits, &mut value_of);
    }

    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut fault_until: Option<Instant> = None;
    let mut last_kill = start;
    while Instant::now() < end {
        if fault_until.is_some_and(|t| Instant::now() >= t) {
            server.calm();
            fault_until = None;
        }
        let roll = rng.below(100);
        if roll < 5 && rows.len() < 30 {
            insert(&mut session, &mut rows, &mut edits, &mut value_of);
        } else if roll < 50 {
            let id = rows[rng.below(rows.len())];
            let (field, text) = FIELDS[rng.below(FIELDS.len())];
            let value = value_of(text);
            let at_us = session.update(id, field, &value);
            edits.push(Edit { side: Side::Local, record: id, field, value, at_us });
        } else if roll < 95 {
            let records: Vec<Value> = server.records("items").into_iter().filter(|r| local_id(r).is_some()).collect();
            if !records.is_empty() {
                let record = &records[rng.below(records.len())];
                let (field, text) = FIELDS[rng.below(FIELDS.len())];
                let value = value_of(text);
                let id = record["id"].as_u64().expect("the store's ids are numbers");
                if let Some(stored) = server.edit("items", id, json!({ field: value.clone() })) {
                    let at_us = stored["updated_at"].as_str().and_then(parse_rfc3339_micros).expect("a stamp");
                    let record = local_id(&stored).unwrap();
                    edits.push(Edit { side: Side::Remote, record, field, value, at_us });
                }
            }
        } else if fault_until.is_none() && start.elapsed() > Duration::from_secs(2) && rng.chance(60) {
            // At least one kill per run, from half-time on; then at most one each 15 s.
            let killed = report.faults.contains_key("kill");
            let fault = match rng.below(4) {
                _ if !killed && Instant::now() >= start + (end - start) / 2 => Fault::Kill,
                0 => Fault::ServerErrors,
                1 => Fault::TooMany,
                2 => Fault::Slow,
                _ if killed && last_kill.elapsed() > Duration::from_secs(15) => Fault::Kill,
                _ if !killed => Fault::Slow,
                _ => Fault::ServerErrors,
            };
            let lasts = Duration::from_millis(1000 + rng.below(2000) as u64);
            match fault {
                Fault::ServerErrors => {
                    *report.faults.entry("500 burst").or_default() += 1;
                    server.always(Mode::Status { code: 500, body: r#"{"error": "boom"}"#.into(), retry_after: None });
                }
                Fault::TooMany => {
                    *report.faults.entry("429").or_default() += 1;
                    server.always(Mode::Status {
                        code: 429,
                        body: r#"{"error": "slow down"}"#.into(),
                        retry_after: Some(1),
                    });
                }
                Fault::Slow => {
                    *report.faults.entry("slow").or_default() += 1;
                    // Some answers come after the link's 3 s timeout: the write is done, the
                    // worker never hears of it.
                    server.delay(Duration::from_millis(200));
                    server.slow_answers(Duration::from_millis(500 + rng.below(3500) as u64));
                }
                Fault::Kill => {
                    *report.faults.entry("kill").or_default() += 1;
                    db.kill_worker();
                    session.reconnect();
                    last_kill = Instant::now();
                }
            }
            fault_until = Some(Instant::now() + lasts);
        }
        std::thread::sleep(PACE);
    }
    server.calm();
    report.local_edits = edits.iter().filter(|e| e.side == Side::Local).count();
    report.remote_edits = edits.len() - report.local_edits;
    report.quiescent = settle(&db, &server);
    observe(&db, &server, &mut report);
    check(&db, &server, &edits, &mut report);
    report
}

/// Outbox entries and pending records (dead letters too) of the link.
fn backlog(db: &WorkerDb) -> i64 {
    db.count(
        "SELECT (SELECT count(*) FROM syncbridge.outbox o JOIN syncbridge.links l ON l.id = o.link_id WHERE l.name = 'items')
              + (SELECT count(*) FROM syncbridge._pending p JOIN syncbridge.links l ON l.id = p.link_id WHERE l.name = 'items')",
    )
}

/// List requests (pulls) the remote has seen.
fn pulls(server: &FaultServer) -> usize {
    server.requests().iter().filter(|r| r.method == "GET" && r.target.starts_with("/items?")).count()
}

/// Waits (at most two minutes) until the outbox and `_pending` are empty and three pulls have
/// passed with them empty; whether that happened.
fn settle(db: &WorkerDb, server: &FaultServer) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut empty_since: Option<usize> = None;
    while Instant::now() < deadline {
        if backlog(db) == 0 {
            let seen = pulls(server);
            match empty_since {
                Some(from) if seen >= from + 3 => return true,
                Some(_) => {}
                None => empty_since = Some(seen),
            }
        } else {
            empty_since = None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

/// The table's rows with their row versions.
fn snapshot(db: &WorkerDb) -> Vec<String> {
    db.admin()
        .query("SELECT format('%s %s %s', id, xmin, to_jsonb(i)) FROM items i ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Watches both sides for five seconds of quiet: no write may happen.
fn observe(db: &WorkerDb, server: &FaultServer, report: &mut Report) {
    let from = Instant::now();
    let before = snapshot(db);
    std::thread::sleep(Duration::from_secs(5));
    let after = snapshot(db);
    for r in server.requests().iter().filter(|r| r.at >= from && r.method != "GET") {
        report.writes_after_quiescence.push(format!("remote: {} {} {}", r.method, r.target, r.body));
    }
    for row in after.iter().filter(|row| !before.contains(row)) {
        report.writes_after_quiescence.push(format!("local: {row}"));
    }
}

fn json_of(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A local value as JSON: text as a string, integers as numbers.
fn local_value(row: &postgres::Row, field: &str, text: bool) -> Value {
    if text {
        row.get::<_, Option<String>>(field).map(Value::from).unwrap_or(Value::Null)
    } else {
        row.get::<_, Option<i32>>(field).map(Value::from).unwrap_or(Value::Null)
    }
}

/// How a field's final value stands against its last edits.
#[derive(Debug, PartialEq)]
enum Verdict<'a> {
    /// The value of the later edit (or of the only side that edited).
    Kept,
    /// The two sides' last edits were less than `TOLERANCE_US` apart, and it is one of them.
    WithinTolerance,
    /// The earlier edit's value, with a conflict row that holds the later one.
    SettledByConflict,
    /// Anything else: this edit, which should have won, is lost.
    Lost(&'a Edit),
}

/// Judges a field's final value `found` against its last local and last remote edit;
/// `recorded(e)` says whether a conflict row of the field holds `e`'s value.
fn judge<'a>(
    local: Option<&'a Edit>,
    remote: Option<&'a Edit>,
    found: &Value,
    recorded: impl Fn(&Edit) -> bool,
) -> Verdict<'a> {
    let (later, earlier) = match (local, remote) {
        (None, None) => return Verdict::Kept,
        (Some(only), None) | (None, Some(only)) => (only, None),
        (Some(l), Some(r)) if l.at_us > r.at_us => (l, Some(r)),
        (Some(l), Some(r)) => (r, Some(l)),
    };
    if *found == later.value {
        return Verdict::Kept;
    }
    let Some(earlier) = earlier else { return Verdict::Lost(later) };
    if later.at_us - earlier.at_us < TOLERANCE_US && *found == earlier.value {
        Verdict::WithinTolerance
    } else if *found == earlier.value && recorded(later) {
        Verdict::SettledByConflict
    } else {
        Verdict::Lost(later)
    }
}

#[test]
fn the_checker_wants_the_later_edit_unless_close_or_recorded() {
    let edit = |side, value: Value, at_us| Edit { side, record: 1, field: "note", value, at_us };
    let l = edit(Side::Local, json!("s1-e1"), 1_000_000);
    let r = edit(Side::Remote, json!("s1-e2"), 2_000_000);
    let near = edit(Side::Remote, json!("s1-e3"), 1_150_000);
    let base = json!("s1-e0");
    let no = |_: &Edit| false;
    assert_eq!(judge(Some(&l), None, &json!("s1-e1"), no), Verdict::Kept);
    assert_eq!(judge(Some(&l), None, &base, no), Verdict::Lost(&l));
    assert_eq!(judge(Some(&l), Some(&r), &json!("s1-e2"), no), Verdict::Kept);
    assert_eq!(judge(Some(&l), Some(&r), &json!("s1-e1"), no), Verdict::Lost(&r), "the earlier edit won silently");
    assert_eq!(judge(Some(&l), Some(&r), &json!("s1-e1"), |e: &Edit| e.value == r.value), Verdict::SettledByConflict);
    assert_eq!(judge(Some(&l), Some(&r), &base, |_: &Edit| true), Verdict::Lost(&r), "the base is never an answer");
    assert_eq!(judge(Some(&l), Some(&near), &json!("s1-e1"), no), Verdict::WithinTolerance);
    assert_eq!(judge(Some(&l), Some(&near), &base, no), Verdict::Lost(&near));
}

/// The last local and the last remote edit of a field.
type LastEdits<'a> = (Option<&'a Edit>, Option<&'a Edit>);

/// Compares the two sides, and every field's final value with its last edits.
fn check(db: &WorkerDb, server: &FaultServer, edits: &[Edit], report: &mut Report) {
    report.remote_writes = server.writes_done();
    report.local_writes = db.count("SELECT count(*) FROM worker_writes");
    let mut admin = db.admin();
    let conflicts: Vec<(String, String, Value, Value)> = admin
        .query(
            "SELECT local_key, field, coalesce(local, 'null')::text, coalesce(remote, 'null')::text FROM syncbridge.conflicts WHERE link = $1",
            &[&LINK],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), json_of(r.get(2)), json_of(r.get(3))))
        .collect();
    report.conflicts = conflicts.len();

    let local: BTreeMap<i64, BTreeMap<&str, Value>> = admin
        .query("SELECT id, name, note, qty, prio FROM items", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get::<_, i64>("id"), FIELDS.iter().map(|(f, text)| (*f, local_value(row, f, *text))).collect()))
        .collect();
    let mut remote: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for record in server.records("items") {
        match local_id(&record) {
            Some(id) => remote.entry(id).or_default().push(record),
            None => report.differences.push(format!("remote record {} names no local id", record["id"])),
        }
    }
    for (id, copies) in &remote {
        if copies.len() > 1 {
            let ids: Vec<String> = copies.iter().map(|r| r["id"].to_string()).collect();
            report.duplicates.push(format!("local id {id} is remote records {}", ids.join(", ")));
        }
        if !local.contains_key(id) {
            report.differences.push(format!("remote record(s) of local id {id} have no local row"));
        }
    }
    for (id, fields) in &local {
        let Some(copies) = remote.get(id) else {
            report.differences.push(format!("row {id} is not on the remote"));
            continue;
        };
        for (field, value) in fields {
            let theirs = copies[0].get(*field).cloned().unwrap_or(Value::Null);
            if theirs != *value {
                report.differences.push(format!("row {id} field {field}: local {value}, remote {theirs}"));
            }
        }
    }

    // The last edit of each record and field, per side.
    let mut last: HashMap<(i64, &str), LastEdits<'_>> = HashMap::new();
    for e in edits {
        let slot = last.entry((e.record, e.field)).or_default();
        match e.side {
            Side::Local => slot.0 = Some(e),
            Side::Remote => slot.1 = Some(e),
        }
    }
    let mut keys: Vec<&(i64, &str)> = last.keys().collect();
    keys.sort();
    for key in keys {
        let (l, r) = last[key];
        let (record, field) = *key;
        let Some(found) = local.get(&record).and_then(|f| f.get(field)) else { continue };
        report.judged += 1;
        let recorded = |later: &Edit| {
            conflicts.iter().any(|(k, f, lv, rv)| {
                *k == record.to_string() && f == field && (*lv == later.value || *rv == later.value)
            })
        };
        let expected = match judge(l, r, found, recorded) {
            Verdict::Kept => continue,
            Verdict::WithinTolerance => {
                report.within_tolerance += 1;
                continue;
            }
            Verdict::SettledByConflict => {
                report.settled_by_conflict += 1;
                continue;
            }
            Verdict::Lost(expected) => expected,
        };
        let side = |e: &Edit| if e.side == Side::Local { "local" } else { "remote" };
        // Which edit wrote the final value, and how long before the one that should have won.
        let origin = edits
            .iter()
            .find(|e| e.record == record && e.field == field && e.value == *found)
            .map(|e| format!("{} edit {} ms before", side(e), (expected.at_us - e.at_us) / 1000))
            .unwrap_or_else(|| "no edit of this field".into());
        if report.timelines.len() < 2 {
            report.timelines.push(timeline(&mut admin, server, edits, record, field));
        }
        report.lost.push((
            record,
            field.to_owned(),
            format!("{} ({} edit)", expected.value, side(expected)),
            format!("{found} ({origin})"),
        ));
    }
}

/// The story of one field of one record, in time order: its edits on both sides, the
/// worker's write requests for the remote record (its create, its updates), the worker's
/// writes of the local row, and the conflicts recorded for the field (times in ms, relative
/// to the first line).
fn timeline(admin: &mut Client, server: &FaultServer, edits: &[Edit], record: i64, field: &str) -> String {
    let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
    let now = Instant::now();
    let mut lines: Vec<(i64, String)> = edits
        .iter()
        .filter(|e| e.record == record && e.field == field)
        .map(|e| (e.at_us, format!("{:?} edit: {}", e.side, e.value)))
        .collect();
    let remote_id = server.records("items").iter().find(|r| local_id(r) == Some(record)).map(|r| r["id"].to_string());
    for r in server.requests() {
        let to_record = remote_id.as_ref().is_some_and(|id| r.target == format!("/items/{id}"));
        let creates =
            r.method == "POST" && serde_json::from_str(&r.body).ok().and_then(|b: Value| local_id(&b)) == Some(record);
        if (to_record || creates) && r.method != "GET" {
            let at = now_us - now.duration_since(r.at).as_micros() as i64;
            lines.push((at, format!("worker {} {} {}", r.method, r.target, r.body)));
        }
    }
    for row in admin
        .query("SELECT (extract(epoch FROM at) * 1000000)::bigint FROM worker_writes WHERE id = $1", &[&record])
        .unwrap()
    {
        lines.push((row.get(0), "worker writes the local row".into()));
    }
    for row in admin
        .query(
            "SELECT (extract(epoch FROM at) * 1000000)::bigint, format('conflict: base %s local %s remote %s, %s wins by %s', \
             base, local, remote, winner, rule) FROM syncbridge.conflicts WHERE link = $1 AND local_key = $2 AND field = $3",
            &[&LINK, &record.to_string(), &field],
        )
        .unwrap()
    {
        lines.push((row.get(0), row.get(1)));
    }
    // The worker's own account: each event of the record (direction, status, reason, HTTP).
    for row in admin
        .query(
            "SELECT (extract(epoch FROM e.at) * 1000000)::bigint, format('event %s %s %s %s', e.direction, e.status, \
             coalesce(e.detail->>'method', '') || ' ' || coalesce(e.detail->>'http_status', ''), coalesce(e.reason, '')) \
             FROM syncbridge.events e WHERE e.link = $1 AND e.local_key = $2",
            &[&LINK, &record.to_string()],
        )
        .unwrap()
    {
        lines.push((row.get(0), row.get(1)));
    }
    lines.sort_by_key(|(at, _)| *at);
    let first = lines.first().map(|(at, _)| *at).unwrap_or_default();
    let mut out = format!("  timeline of record {record} field {field}:");
    for (at, line) in lines {
        out += &format!("\n    {:>7} ms  {line}", (at - first) / 1000);
    }
    out
}
