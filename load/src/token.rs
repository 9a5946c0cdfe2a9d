//! Minting HS256 access tokens the way the server issues them, so the load
//! run needs no PBKDF2 sign-in per buyer.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::Serialize;

use crate::util::{Rng, unix_secs};

#[derive(Debug, Serialize)]
struct Claims<'a> {
    sub: &'a str,
    role: &'a str,
    iss: &'a str,
    iat: u64,
    exp: u64,
}

/// Signs tokens with the server's SECRET_KEY.
pub(crate) struct Minter {
    key: EncodingKey,
    header: Header,
    issuer: String,
    ttl_secs: u64,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("issuer", &self.issuer)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl Minter {
    pub(crate) fn new(secret: &[u8], issuer: &str, ttl_secs: u64) -> Self {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".to_owned());
        Self {
            key: EncodingKey::from_secret(secret),
            header,
            issuer: issuer.to_owned(),
            ttl_secs,
        }
    }

    pub(crate) fn mint(&self, sub: &str, role: &str) -> Result<String, String> {
        let now = unix_secs();
        let claims = Claims {
            sub,
            role,
            iss: &self.issuer,
            iat: now,
            exp: now + self.ttl_secs,
        };
        encode(&self.header, &claims, &self.key).map_err(|e| format!("cannot sign a token: {e}"))
    }
}

/// `n` customers with distinct random user ids: (user id, token).
pub(crate) fn customers(minter: &Minter, n: usize) -> Result<Vec<(String, String)>, String> {
    let mut rng = Rng::from_entropy();
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let id = rng.object_id();
        if !seen.insert(id.clone()) {
            continue;
        }
        let token = minter.mint(&id, "customer")?;
        out.push((id, token));
    }
    Ok(out)
}
