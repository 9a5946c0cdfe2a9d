//! A real three-primary Redis Cluster from Debian's `redis-server`, on free
//! ports in temp dirs, joined with `redis-cli --cluster create`; killed on drop.

use std::process::{Child, Command};
use std::time::Duration;

use super::redis::{redis_command, spawn_redis};
use super::{free_port, port_open, wait_until};

#[derive(Debug)]
pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Child>,
    _dirs: Vec<tempfile::TempDir>,
}

impl RedisCluster {
    pub fn start(primaries: usize) -> Self {
        let mut ports = Vec::new();
        let mut children = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..primaries {
            let port = free_port();
            let dir = tempfile::tempdir().expect("temp dir");
            let mut cmd = redis_command(port, dir.path());
            cmd.args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "5000"]);
            let child = spawn_redis(cmd);
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
            .args(["--cluster-replicas", "0", "--cluster-yes"])
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
            _dirs: dirs,
        };
        let ready = wait_until(Duration::from_secs(30), || {
            cluster.ports.iter().all(|p| {
                cluster
                    .cli(*p, &["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            })
        });
        assert!(ready, "the cluster reached cluster_state:ok");
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

    /// The node port that holds `key`.
    pub fn owner_of(&self, key: &str) -> u16 {
        *self
            .ports
            .iter()
            .find(|p| self.cli(**p, &["EXISTS", key]) == "1")
            .unwrap_or_else(|| panic!("no node holds {key}"))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
