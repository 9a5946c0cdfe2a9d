//! A real `redis-server` on a free port in a temp dir, killed on drop, started
//! with the project's flags from `scripts/lib/redis.flags` (the scripts read
//! the same file).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, port_open, wait_until};

/// One `--flag value` a line; `#` starts a comment line, `""` is an empty value.
const FLAGS_FILE: &str = include_str!("../../../scripts/lib/redis.flags");

/// The flags of `scripts/lib/redis.flags`, as arguments.
pub fn project_flags() -> Vec<String> {
    FLAGS_FILE
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .flat_map(|line| {
            let (flag, value) = line
                .split_once(char::is_whitespace)
                .unwrap_or_else(|| panic!("scripts/lib/redis.flags: `{line}` has no value"));
            let value = match value.trim() {
                "\"\"" => "",
                v => v,
            };
            [flag.to_owned(), value.to_owned()]
        })
        .collect()
}

/// `redis-server` (or `$REDIS_SERVER`) with the project's flags, listening on
/// 127.0.0.1:`port`, data and `redis.log` in `dir`, output discarded.
pub fn redis_command(port: u16, dir: &Path) -> Command {
    let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
    let mut cmd = Command::new(bin);
    cmd.args(project_flags())
        .args(["--port", &port.to_string(), "--dir"])
        .arg(dir)
        .args(["--logfile", "redis.log"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Spawns `cmd`, or panics naming the binary and how to install it.
pub fn spawn_redis(mut cmd: Command) -> Child {
    cmd.spawn().unwrap_or_else(|e| {
        let bin = cmd.get_program().to_string_lossy();
        panic!("cannot start `{bin}` ({e}); install it with scripts/setup.sh (Debian package redis-server)")
    })
}

#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra `--name value` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = Self {
            port: free_port(),
            child: None,
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = redis_command(self.port, self.dir.path());
        cmd.args(&self.extra);
        self.child = Some(spawn_redis(cmd));
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(10), || port_open(port)),
            "redis-server did not start on port {port}"
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it holds its connections and answers
    /// nothing, like a host that hangs. [`resume`](Self::resume) thaws it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill (Debian package procps)");
        assert!(status.success(), "kill {sig} {pid}");
    }

    /// Starts it again on the same port and directory (after `kill`, this
    /// is a crash and restart; the AOF, if on, is replayed).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs redis-cli against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
