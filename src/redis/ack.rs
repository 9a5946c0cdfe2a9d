//! Durable acknowledgement on replicated Redis: a write is confirmed only once
//! `WAIT numreplicas timeout` says enough replicas hold it.
//!
//! WAIT covers every write its connection sent before it, so the writes that
//! finish on one connection share rounds: a confirmation joins the first round
//! that starts after it asked, and at most one WAIT per connection (and per
//! Cluster slot, since WAIT must reach the primary that took the write) is in
//! flight at a time. Under load one WAIT confirms a whole batch of purchases,
//! so the cost is about one replication round trip of latency, not one WAIT
//! per purchase.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use tokio::sync::watch;

pub use crate::error::AckError;

/// Confirms writes on the connections of one pool.
#[derive(Debug)]
pub struct Acks {
    replicas: u32,
    timeout: Duration,
    /// One map of groups per pool client, keyed by Cluster slot (0 when the
    /// server is not a cluster).
    groups: Vec<Mutex<HashMap<u16, Arc<Group>>>>,
    clients: Vec<Client>,
}

/// The rounds of one connection (and slot).
#[derive(Debug)]
struct Group {
    client: Client,
    slot: u16,
    state: Mutex<Rounds>,
    /// The latest finished round and its result.
    done: watch::Sender<(u64, Result<(), AckError>)>,
}

#[derive(Debug, Default)]
struct Rounds {
    /// Rounds started so far (round numbers start at 1).
    started: u64,
    /// A round is in flight.
    sending: bool,
    /// The highest round a waiter asked for.
    wanted: u64,
}

impl Acks {
    /// `replicas` 0 confirms at once (no WAIT is ever sent).
    pub fn new(pool: &Pool, replicas: u32, timeout: Duration) -> Self {
        let clients = pool.clients().to_vec();
        Self {
            replicas,
            timeout,
            groups: clients.iter().map(|_| Mutex::default()).collect(),
            clients,
        }
    }

    pub fn enabled(&self) -> bool {
        self.replicas > 0
    }

    /// The pool's clients; a write that is to be confirmed must go through
    /// `clients()[i]` and be confirmed with the same `i`.
    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    /// The client a write for `key`'s slot should go through: the first,
    /// from `start` on, with no WAIT in flight for that slot, or `start`'s
    /// when every one is waiting. A WAIT holds up every command queued
    /// behind it on its connection, so writes go where none is in the way,
    /// and the connections take turns: one collects writes while another
    /// waits for the replicas.
    pub fn pick(&self, start: usize, key: &[u8]) -> usize {
        let n = self.clients.len();
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| !self.waiting(i, key))
            .unwrap_or(start % n)
    }

    /// True while a WAIT is in flight on client `i` for `key`'s slot.
    fn waiting(&self, i: usize, key: &[u8]) -> bool {
        let client = &self.clients[i];
        let slot = if client.is_clustered() {
            fred::util::redis_keyslot(key)
        } else {
            0
        };
        let groups = self.groups[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        groups.get(&slot).is_some_and(|g| {
            g.state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .sending
        })
    }

    /// Waits until `replicas` replicas hold every write that client `i` has
    /// finished for `key`'s slot.
    pub async fn confirm(&self, i: usize, key: &[u8]) -> Result<(), AckError> {
        if self.replicas == 0 {
            return Ok(());
        }
        let client = &self.clients[i % self.clients.len()];
        let slot = if client.is_clustered() {
            fred::util::redis_keyslot(key)
        } else {
            0
        };
        let group = {
            let mut groups = self.groups[i % self.groups.len()]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            groups
                .entry(slot)
                .or_insert_with(|| {
                    Arc::new(Group {
                        client: client.clone(),
                        slot,
                        state: Mutex::default(),
                        done: watch::Sender::new((0, Ok(()))),
                    })
                })
                .clone()
        };
        group.confirm(self.replicas, self.timeout).await
    }
}

impl Group {
    async fn confirm(self: Arc<Self>, replicas: u32, timeout: Duration) -> Result<(), AckError> {
        let mut rx = self.done.subscribe();
        let target = {
            let mut st = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // The write finished before this point, so any round that starts
            // from now on covers it; the one in flight may not.
            let target = st.started + 1;
            if st.sending {
                st.wanted = st.wanted.max(target);
            } else {
                st.sending = true;
                st.started = target;
                tokio::spawn(self.clone().send_rounds(target, replicas, timeout));
            }
            target
        };
        loop {
            {
                let seen = rx.borrow_and_update();
                if seen.0 >= target {
                    return seen.1.clone();
                }
            }
            if rx.changed().await.is_err() {
                return Err(AckError::Failed("acknowledgement group closed".into()));
            }
        }
    }

    /// Sends WAIT rounds while waiters ask for them.
    async fn send_rounds(self: Arc<Self>, mut round: u64, replicas: u32, timeout: Duration) {
        loop {
            let result = self.wait(replicas, timeout).await;
            let _previous = self.done.send_replace((round, result));
            let mut st = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if st.wanted > st.started {
                st.started += 1;
                round = st.started;
            } else {
                st.sending = false;
                return;
            }
        }
    }

    async fn wait(&self, replicas: u32, timeout: Duration) -> Result<(), AckError> {
        match wait(&self.client, self.slot, replicas, timeout).await {
            Ok(n) if n >= i64::from(replicas) => Ok(()),
            Ok(n) => Err(AckError::Short {
                acked: n,
                wanted: replicas,
            }),
            Err(e) => Err(AckError::Failed(e.to_string())),
        }
    }
}

/// `WAIT replicas timeout` on `client`, routed to the primary of `slot` (on a
/// Cluster; ignored otherwise). Returns how many replicas acknowledged every
/// write this connection made before it.
pub async fn wait(
    client: &Client,
    slot: u16,
    replicas: u32,
    timeout: Duration,
) -> Result<i64, Error> {
    let cmd = CustomCommand::new_static("WAIT", ClusterHash::Custom(slot), false);
    let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    client
        .custom(
            cmd,
            vec![Value::Integer(i64::from(replicas)), Value::Integer(ms)],
        )
        .await
}
