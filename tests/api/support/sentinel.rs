//! A replicated Redis watched by Sentinel, from Debian's `redis-server` on
//! free ports in temp dirs: one primary, its replicas and three Sentinels
//! (`redis-server <conf> --sentinel`) with a short `down-after-milliseconds`,
//! so a failover takes a few seconds. Everything is killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::redis::RedisServer;
use super::{free_port, port_open, wait_until};

/// The service name the Sentinels monitor.
pub const SERVICE: &str = "flashsale";

/// Down-after: how long the primary must be silent before Sentinels act.
const DOWN_AFTER_MS: u64 = 1_000;

#[derive(Debug)]
pub struct SentinelSetup {
    /// Index 0 starts as the primary, the others as its replicas.
    pub nodes: Vec<RedisServer>,
    pub sentinel_ports: Vec<u16>,
    sentinels: Vec<Child>,
    _dirs: Vec<tempfile::TempDir>,
}

impl SentinelSetup {
    /// Starts the primary, `replicas` replicas and three Sentinels, and
    /// waits until every replica is in sync and every Sentinel knows them.
    /// `extra` goes to every data node (e.g. `--min-replicas-to-write 1`).
    pub fn start(replicas: usize, extra: &[&str]) -> Self {
        let primary = RedisServer::start_with(extra);
        let primary_port = primary.port.to_string();
        let mut replica_args: Vec<&str> = extra.to_vec();
        replica_args.extend(["--replicaof", "127.0.0.1", &primary_port]);
        let mut nodes = vec![primary];
        for _ in 0..replicas {
            let replica = RedisServer::start_with(&replica_args);
            assert!(
                wait_until(Duration::from_secs(20), || {
                    replica
                        .cli(&["INFO", "replication"])
                        .contains("master_link_status:up")
                }),
                "a replica did not sync with the primary"
            );
            nodes.push(replica);
        }
        let mut sentinels = Vec::new();
        let mut ports = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let dir = tempfile::tempdir().expect("temp dir");
            let conf = dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile sentinel.log\n\
                     sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n\
                     sentinel failover-timeout {SERVICE} 10000\n\
                     sentinel parallel-syncs {SERVICE} 1\n",
                    dir = dir.path().display()
                ),
            )
            .expect("sentinel.conf");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start redis-server --sentinel ({e}); scripts/setup.sh installs the Debian package redis-server")
                });
            assert!(
                wait_until(Duration::from_secs(10), || port_open(port)),
                "sentinel on {port}"
            );
            sentinels.push(child);
            ports.push(port);
            dirs.push(dir);
        }
        let setup = Self {
            nodes,
            sentinel_ports: ports,
            sentinels,
            _dirs: dirs,
        };
        assert!(
            wait_until(Duration::from_secs(20), || {
                setup.sentinel_ports.iter().all(|p| {
                    let out = sentinel_cli(*p, &["SENTINEL", "replicas", SERVICE]);
                    setup.nodes[1..]
                        .iter()
                        .all(|n| out.contains(&n.port.to_string()))
                })
            }),
            "the Sentinels did not discover the replica"
        );
        setup
    }

    /// `REDIS_SENTINELS` for the app.
    pub fn sentinels_var(&self) -> String {
        self.sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port the Sentinels currently name as the primary.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinel_ports.iter().find_map(|p| {
            let out = sentinel_cli(*p, &["SENTINEL", "get-master-addr-by-name", SERVICE]);
            out.lines().nth(1).and_then(|l| l.trim().parse().ok())
        })
    }

    /// The data node listening on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node of this setup")
    }

    /// The data node listening on `port`, to kill or stop.
    pub fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this setup")
    }
}

fn sentinel_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Drop for SentinelSetup {
    fn drop(&mut self) {
        for c in &mut self.sentinels {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
