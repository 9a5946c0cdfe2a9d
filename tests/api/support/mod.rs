//! Real stores for tests: `redis-server` and `secantusd-py` on free ports;
//! [`ChildGuard`], the one owner of every child process a test starts; and
//! the polls with a deadline ([`eventually`], and [`wait_until`] for
//! synchronous start-up code).

pub mod cluster;
pub mod mongo;
pub mod redis;
pub mod sentinel;

use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long a poll waits before probing again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Polls an async condition until it holds or `patience` passes; true when
/// it held. The one poll tests use to wait for something asynchronous.
pub async fn eventually<F, Fut>(patience: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if probe().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// [`eventually`] for synchronous code (starting a store, outside any await).
pub fn wait_until(patience: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// True when something accepts TCP connections on the port.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so a
/// failing assert never leaves it running.
#[derive(Debug)]
pub struct ChildGuard {
    /// `None` once the child has been killed or has exited and been reaped.
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `command` in a process group of its own, so that signals and
    /// the kill on drop reach everything it started: a wrapper such as
    /// faketime forks the real program and would otherwise leave it running.
    pub fn spawn(command: &mut Command) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        Ok(Self {
            child: Some(command.process_group(0).spawn()?),
        })
    }

    #[allow(dead_code)] // the ops binary stops the binary with SIGTERM
    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("the child is running").id()
    }

    /// Sends SIGTERM, the signal a supervisor stops a service with.
    #[allow(dead_code)] // used by the ops binary
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Freezes the process (SIGSTOP), as a stalled host or a long GC pause would.
    #[allow(dead_code)] // used by the api binary
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a frozen process (SIGCONT).
    #[allow(dead_code)] // used by the api binary
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Sends `sig` to the child's process group.
    fn signal(&self, sig: &str) {
        let group = format!("-{}", self.id());
        let sent = Command::new("kill")
            .args([sig, "--", &group])
            .status()
            .expect("kill (Debian package procps)");
        assert!(sent.success(), "kill {sig} -- {group}");
    }

    /// Kills the child and everything in its process group (SIGKILL: a
    /// crash, not a clean stop) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// How the child exited, once it has (None if it still runs after `patience`).
    #[allow(dead_code)] // used by the ops binary
    pub async fn exit_status(&mut self, patience: Duration) -> Option<ExitStatus> {
        let mut status = None;
        let child = self.child.as_mut().expect("the child was not killed");
        eventually(patience, || {
            if status.is_none() {
                status = child.try_wait().expect("try_wait");
            }
            std::future::ready(status.is_some())
        })
        .await;
        if status.is_some() {
            self.child = None; // reaped by try_wait
        }
        status
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
