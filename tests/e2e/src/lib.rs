//! Shared helpers of the end-to-end tests: connecting to the cluster that `scripts/e2e.sh`
//! started (with `shared_preload_libraries = 'pg_syncbridge'`), fresh databases per test.

pub mod fault;
pub mod remote;
pub mod worker;

use postgres::{Client, NoTls};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The cluster under test, from `SYNCBRIDGE_E2E_PORT` (and optionally `SYNCBRIDGE_E2E_HOST`).
pub fn server() -> (String, u16) {
    let port = std::env::var("SYNCBRIDGE_E2E_PORT")
        .expect("SYNCBRIDGE_E2E_PORT is not set: run the end-to-end tests with scripts/e2e.sh, which starts a cluster")
        .parse()
        .expect("SYNCBRIDGE_E2E_PORT must be a port number");
    let host = std::env::var("SYNCBRIDGE_E2E_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    (host, port)
}

pub fn connect_as(db: &str, user: &str) -> Client {
    let (host, port) = server();
    Client::connect(&format!("host={host} port={port} user={user} dbname={db}"), NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to {host}:{port}/{db} as {user}: {e}"))
}

/// A database of its own for one test, with the extension created in it.
pub struct TestDb {
    pub name: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    pub fn new(test: &str) -> Self {
        let name = format!("e2e_{}_{}_{}", test, std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let mut admin = connect_as("postgres", "postgres");
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).unwrap();
        let db = Self { name };
        db.admin().batch_execute("CREATE EXTENSION pg_syncbridge").unwrap();
        db
    }

    /// A superuser connection.
    pub fn admin(&self) -> Client {
        connect_as(&self.name, "postgres")
    }

    pub fn connect_as(&self, user: &str) -> Client {
        connect_as(&self.name, user)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let mut admin = connect_as("postgres", "postgres");
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name));
    }
}

/// Creates a login role for one test; dropped (with what it owns) at the end.
pub struct TestRole {
    pub name: String,
}

impl TestRole {
    pub fn new(db: &TestDb, base: &str) -> Self {
        let name = format!("{base}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        db.admin().batch_execute(&format!("CREATE ROLE \"{name}\" LOGIN")).unwrap();
        Self { name }
    }

    /// A login role made from the `postgres` database. Declare it before the databases it
    /// owns objects in, so that they are dropped first.
    pub fn named(base: &str) -> Self {
        let name = format!("{base}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        connect_as("postgres", "postgres").batch_execute(&format!("CREATE ROLE \"{name}\" LOGIN")).unwrap();
        Self { name }
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        let mut admin = connect_as("postgres", "postgres");
        let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS \"{}\"", self.name));
    }
}

/// Keys in the outbox of a link, in order, flattened.
pub fn outbox_keys(client: &mut Client, link: &str) -> Vec<(String, String)> {
    client
        .query(
            "SELECT o.op, k FROM syncbridge.outbox o JOIN syncbridge.links l ON l.id = o.link_id, unnest(o.keys) k \
             WHERE l.name = $1 ORDER BY o.id",
            &[&link],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The cluster's server log so far (scripts/e2e.sh keeps it in its data directory).
pub fn server_log() -> String {
    let dir = std::env::var("SYNCBRIDGE_E2E_DIR").unwrap_or_else(|_| "/tmp/syncbridge-e2e".into());
    std::fs::read_to_string(format!("{dir}/server.log")).unwrap_or_default()
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(err: &postgres::Error) -> String {
    err.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {err}"))
}
