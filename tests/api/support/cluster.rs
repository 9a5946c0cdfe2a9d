//! A real Redis Cluster from Debian's `redis-server` (three primaries, with
//! or without a replica each), on free ports in temp dirs, joined with
//! `redis-cli --cluster create`; killed on drop.

use std::process::{Child, Command};
use std::time::Duration;

use super::redis::{redis_command, spawn_redis};
use super::{free_port, port_open, wait_until};

#[derive(Debug)]
pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Option<Child>>,
    dirs: Vec<tempfile::TempDir>,
    /// The cluster flags every node was started with (for a restart).
    flags: Vec<String>,
}

fn node_command(port: u16, dir: &std::path::Path, flags: &[String]) -> Command {
    let mut cmd = redis_command(port, dir);
    cmd.args(["--cluster-enabled", "yes"])
        .args(["--cluster-config-file", "nodes.conf"])
        .args(flags);
    cmd
}

impl RedisCluster {
    pub fn start(primaries: usize) -> Self {
        Self::start_with_replicas(primaries, 0, &[])
    }

    /// `primaries` primaries with `replicas` replicas each; `extra` goes to
    /// every node. Replicas take over after a 2 s node timeout.
    pub fn start_with_replicas(primaries: usize, replicas: usize, extra: &[&str]) -> Self {
        let mut ports = Vec::new();
        let mut children = Vec::new();
        let mut dirs = Vec::new();
        let timeout = if replicas > 0 { "2000" } else { "5000" };
        let mut flags = vec!["--cluster-node-timeout".to_owned(), timeout.to_owned()];
        flags.extend(extra.iter().map(|f| (*f).to_owned()));
        for _ in 0..primaries * (1 + replicas) {
            let port = free_port();
            let dir = tempfile::tempdir().expect("temp dir");
            let child = Some(spawn_redis(node_command(port, dir.path(), &flags)));
            assert!(
                wait_until(Duration::from_secs(10), || port_open(port)),
                "node on {port}"
            );
            ports.push(port);
            children.push(child);
            dirs.push(dir);
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self {
            ports,
            children,
            dirs,
            flags,
        };
        let ready = wait_until(Duration::from_secs(30), || {
            cluster.ports.iter().all(|p| {
                cluster
                    .cli(*p, &["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
                    && (cluster.is_primary(*p)
                        || cluster
                            .cli(*p, &["INFO", "replication"])
                            .contains("master_link_status:up"))
            })
        });
        assert!(
            ready,
            "the cluster reached cluster_state:ok with every replica in sync"
        );
        cluster
    }

    /// `redis-cluster://` URL naming every node.
    pub fn url(&self) -> String {
        let (first, rest) = self.ports.split_first().unwrap();
        let extra: Vec<String> = rest.iter().map(|p| format!("node=127.0.0.1:{p}")).collect();
        format!("redis-cluster://127.0.0.1:{first}?{}", extra.join("&"))
    }

    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The primary that holds `key`.
    pub fn owner_of(&self, key: &str) -> u16 {
        self.primary_of(key)
            .unwrap_or_else(|| panic!("no primary holds {key}"))
    }

    /// The primary that holds `key`, if one does (none during a failover).
    pub fn primary_of(&self, key: &str) -> Option<u16> {
        self.ports
            .iter()
            .copied()
            .find(|p| self.is_primary(*p) && self.cli(*p, &["EXISTS", key]) == "1")
    }

    /// True when the node on `port` is running and a primary.
    pub fn is_primary(&self, port: u16) -> bool {
        self.cli(port, &["ROLE"]).lines().next() == Some("master")
    }

    /// Kills the node on `port` (SIGKILL: a crash).
    #[allow(dead_code)] // used by the failover test only
    pub fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).expect("a node");
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed node again on its port and directory, as a
    /// supervisor would; it rejoins the cluster (as a replica, once its
    /// slots have failed over).
    #[allow(dead_code)] // used by the failover test only
    pub fn restart(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).expect("a node");
        self.kill(port);
        let cmd = node_command(port, self.dirs[i].path(), &self.flags);
        self.children[i] = Some(spawn_redis(cmd));
        assert!(
            wait_until(Duration::from_secs(10), || port_open(port)),
            "node on {port} restarted"
        );
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
