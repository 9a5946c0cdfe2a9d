//! One-use WebSocket tickets (`POST /api/ws-ticket`): a browser cannot set
//! an Authorization header on a WebSocket, and a long-lived token in a URL
//! ends up in logs and history. A ticket is 192 random bits, valid for
//! `WS_TICKET_TTL_SECS`, stored in Redis (`SET EX`) and consumed by the
//! handshake with `GETDEL`, so it works once, on any instance.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fred::prelude::*;
use fred::types::Expiration;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::StoreError;

const PREFIX: &str = "flashsale:ws-ticket:";
const TICKET_BYTES: usize = 24;
/// Longest ticket text accepted (a 24-byte ticket is 32 characters).
const MAX_TICKET_LEN: usize = 64;

/// Issues and consumes tickets.
#[derive(Debug, Clone)]
pub struct WsTickets {
    pool: Pool,
    ttl: Duration,
    rng: SystemRandom,
}

impl WsTickets {
    pub fn new(pool: Pool, ttl: Duration) -> Self {
        Self {
            pool,
            ttl,
            rng: SystemRandom::new(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new ticket standing for `token` (the caller's verified bearer
    /// token, checked again when the ticket is used).
    pub async fn issue(&self, token: &str) -> Result<String, StoreError> {
        let mut bytes = [0u8; TICKET_BYTES];
        self.rng
            .fill(&mut bytes)
            .map_err(|_| StoreError::Corrupt("the system random source failed".to_owned()))?;
        let ticket = URL_SAFE_NO_PAD.encode(bytes);
        let secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        let _: () = self
            .pool
            .next()
            .set(
                format!("{PREFIX}{ticket}"),
                token,
                Some(Expiration::EX(secs)),
                None,
                false,
            )
            .await?;
        Ok(ticket)
    }

    /// The token a ticket stands for, consumed; None for an unknown, used or
    /// expired ticket.
    pub async fn redeem(&self, ticket: &str) -> Result<Option<String>, StoreError> {
        if ticket.is_empty()
            || ticket.len() > MAX_TICKET_LEN
            || !ticket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Ok(None);
        }
        Ok(self.pool.next().getdel(format!("{PREFIX}{ticket}")).await?)
    }
}
