//! Databases the background worker serves. scripts/e2e.sh starts the cluster with
//! `syncbridge.database = 'postgres,sbw1,…,sbw60'`; a test takes one of them by number, creates
//! it with the extension, and waits until the worker (which retries every 5 s while its
//! database is missing) has connected.

use crate::connect_as;
use postgres::Client;
use std::time::{Duration, Instant};

pub struct WorkerDb {
    pub name: String,
}

impl WorkerDb {
    /// Database `sbw{n}`: each test uses its own `n` (1 to 60).
    pub fn take(n: u32) -> Self {
        let name = format!("sbw{n}");
        let mut admin = connect_as("postgres", "postgres");
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let db = Self { name };
        db.admin().batch_execute("CREATE EXTENSION pg_syncbridge").unwrap();
        db.wait_for_worker();
        db
    }

    pub fn admin(&self) -> Client {
        connect_as(&self.name, "postgres")
    }

    pub fn connect_as_user(&self, user: &str) -> Client {
        connect_as(&self.name, user)
    }

    /// The worker's pid, once it is connected to this database.
    pub fn worker_pid(&self) -> Option<i32> {
        let mut c = connect_as("postgres", "postgres");
        c.query_opt(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_syncbridge' AND datname = $1",
            &[&self.name],
        )
        .unwrap()
        .map(|r| r.get(0))
    }

    pub fn wait_for_worker(&self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(pid) = self.worker_pid() {
                return pid;
            }
            assert!(Instant::now() < deadline, "no pg_syncbridge worker connected to {} after 30 s", self.name);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The one number `query` returns, such as a `count(*)`.
    pub fn count(&self, query: &str) -> i64 {
        self.admin().query_one(query, &[]).unwrap().get(0)
    }

    /// Number of events of a link with this direction and status.
    pub fn events(&self, link: &str, direction: &str, status: &str) -> i64 {
        self.admin()
            .query_one(
                "SELECT count(*) FROM syncbridge.events WHERE link = $1 AND direction = $2 AND status = $3",
                &[&link, &direction, &status],
            )
            .unwrap()
            .get(0)
    }
}

impl Drop for WorkerDb {
    fn drop(&mut self) {
        let mut admin = connect_as("postgres", "postgres");
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}
