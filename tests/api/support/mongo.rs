//! A real Mongo-wire server (`secantusd-py`, SecantusDB) on a free port.
//!
//! Most tests share one server per test binary (each test uses its own
//! database). Rust never drops statics, so the shared server runs under a
//! small shell watchdog that stops it and removes its data once the test
//! process is gone. Tests that stop and restart MongoDB start their own
//! [`MongoServer`], killed on drop (its child sits in a [`ChildGuard`]).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::{ChildGuard, free_port, port_open, wait_until};

fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("SECANTUSD") {
        return PathBuf::from(p);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/secantusd-py");
    if local.exists() {
        return local;
    }
    PathBuf::from("secantusd-py")
}

fn missing(e: &std::io::Error) -> ! {
    panic!(
        "cannot start `{}` ({e}); run scripts/setup.sh, which installs SecantusDB into .venv",
        binary().display()
    )
}

fn wait_ready(port: u16) {
    assert!(
        wait_until(Duration::from_secs(60), || port_open(port)),
        "secantusd-py did not start on port {port}"
    );
}

pub fn url_for(port: u16) -> String {
    format!("mongodb://127.0.0.1:{port}/?directConnection=true")
}

/// The server shared by the tests of this binary.
static WATCHDOG: OnceLock<std::sync::Mutex<Child>> = OnceLock::new();

pub fn shared_url() -> String {
    static PORT: OnceLock<u16> = OnceLock::new();
    let port = *PORT.get_or_init(|| {
        let port = free_port();
        let bin = binary();
        let script = format!(
            r#"dir=$(mktemp -d); "{bin}" --host 127.0.0.1 --port {port} --storage-path "$dir/data" --log-level ERROR --cache-size 256M >"$dir/log" 2>&1 & child=$!
while kill -0 {parent} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done
kill $child 2>/dev/null; wait $child 2>/dev/null; rm -rf "$dir""#,
            bin = bin.display(),
            parent = std::process::id(),
        );
        if !bin.exists() && bin.components().count() > 1 {
            missing(&std::io::Error::new(std::io::ErrorKind::NotFound, "not found"));
        }
        let watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| missing(&e));
        // Kept for the life of the process; it exits by itself after us.
        let _ = WATCHDOG.set(std::sync::Mutex::new(watchdog));
        wait_ready(port);
        port
    });
    url_for(port)
}

/// A server of one's own, for tests that stop and restart it.
#[derive(Debug)]
pub struct MongoServer {
    pub port: u16,
    child: Option<ChildGuard>,
    dir: tempfile::TempDir,
}

impl MongoServer {
    pub fn start() -> Self {
        let mut s = Self {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = ChildGuard::spawn(
            Command::new(binary())
                .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
                .arg("--storage-path")
                .arg(self.dir.path().join("data"))
                .args(["--log-level", "ERROR", "--cache-size", "128M"])
                // Fault tests kill this server: acknowledged writes must be on disk.
                .arg("--sync-on-commit")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap_or_else(|e| missing(&e));
        self.child = Some(child);
        wait_ready(self.port);
    }

    pub fn url(&self) -> String {
        url_for(self.port)
    }

    /// Kills the server (SIGKILL) and waits until its port is closed.
    pub fn stop(&mut self) {
        self.child = None; // the guard kills and reaps it
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(10), || !port_open(port)),
            "secantusd-py still listening on {port}"
        );
    }

    /// Starts it again on the same port and data directory.
    pub fn start_again(&mut self) {
        self.spawn();
    }
}
