//! Real stores for tests: `redis-server` and `secantusd-py` on free ports.

pub mod cluster;
pub mod mongo;
pub mod redis;
pub mod sentinel;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Polls `probe` until it returns true or `patience` passes.
pub fn wait_until(patience: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
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
