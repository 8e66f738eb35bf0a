//! json-server 0.17 (npm, pinned in tests/remote) as a real REST peer: started on a free port
//! with its own data file, stopped and started again on the same file ("remote down"), killed
//! when dropped. Plus a small blocking client for the tests' own reads and edits.

use serde_json::Value;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct JsonServer {
    pub port: u16,
    file: PathBuf,
    child: Option<Child>,
}

fn bin() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../remote/node_modules/.bin/json-server");
    assert!(root.exists(), "json-server is not installed: run scripts/setup.sh (npm install in tests/remote)");
    root
}

impl JsonServer {
    /// A json-server with the given collections, empty.
    pub fn start(collections: &[&str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let file = std::env::temp_dir().join(format!("syncbridge-e2e-remote-{port}.json"));
        let doc: serde_json::Map<String, Value> =
            collections.iter().map(|c| (c.to_string(), Value::Array(Vec::new()))).collect();
        std::fs::write(&file, Value::Object(doc).to_string()).unwrap();
        let mut s = Self { port, file, child: None };
        s.resume();
        s
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (connections are refused until `resume`).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data file.
    pub fn resume(&mut self) {
        let child = Command::new(bin())
            .args(["--quiet", "--port", &self.port.to_string()])
            .arg(&self.file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("json-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(&format!("{}/db", self.url())).call().is_err() {
            assert!(Instant::now() < deadline, "json-server did not come up on port {}", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// All records of a collection.
    pub fn list(&self, collection: &str) -> Vec<Value> {
        let v: Value = ureq::get(&format!("{}/{collection}", self.url())).call().unwrap().into_json().unwrap();
        v.as_array().cloned().unwrap_or_default()
    }

    pub fn create(&self, collection: &str, record: Value) -> Value {
        ureq::post(&format!("{}/{collection}", self.url())).send_json(record).unwrap().into_json().unwrap()
    }

    pub fn patch(&self, collection: &str, id: &Value, fields: Value) {
        let id = id.as_i64().map(|n| n.to_string()).or_else(|| id.as_str().map(str::to_owned)).unwrap();
        ureq::patch(&format!("{}/{collection}/{id}", self.url())).send_json(fields).unwrap();
    }
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Waits until `check` holds, polling every 100 ms; panics with `what` after `secs` seconds.
pub fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "gave up after {secs} s waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
