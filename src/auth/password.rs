//! PBKDF2-HMAC-SHA256 password hashes, computed off the async threads.
//!
//! Stored form: `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`, so the
//! iteration count can be raised later without breaking old hashes. At most
//! `concurrency` derivations run at once, so a sign-in flood cannot take every
//! blocking thread.

use std::num::NonZeroU32;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::Semaphore;

const SCHEME: &str = "pbkdf2-sha256";
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
static ALGORITHM: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("stored password hash is malformed")]
    Malformed,
    #[error("random number generator failed")]
    Rng,
    #[error("hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("hashing pool closed")]
    Closed,
}

/// Hashes and verifies passwords on the blocking pool with bounded concurrency.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    iterations: NonZeroU32,
    permits: Arc<Semaphore>,
    rng: SystemRandom,
    /// A hash of a random password at the configured count, verified against
    /// on unknown emails so that both failures cost the same time. Stored
    /// hashes converge on the same count: a sign-in whose hash has another
    /// count stores a new one ([`Self::needs_rehash`]).
    dummy: Arc<String>,
}

impl PasswordHasher {
    pub fn new(iterations: u32, concurrency: usize) -> Result<Self, PasswordError> {
        let iterations = NonZeroU32::new(iterations.max(1)).expect("non-zero");
        let rng = SystemRandom::new();
        let mut pw = [0u8; 16];
        rng.fill(&mut pw).map_err(|_| PasswordError::Rng)?;
        let dummy = hash_blocking(&rng, iterations, &B64.encode(pw))?;
        Ok(Self {
            iterations,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            rng,
            dummy: Arc::new(dummy),
        })
    }

    /// The iteration count of new hashes (`PASSWORD_ITERATIONS`).
    pub fn iterations(&self) -> u32 {
        self.iterations.get()
    }

    /// True when `stored` was hashed with another iteration count than the
    /// configured one: after a successful verification the caller re-hashes
    /// the password, so every account (and the dummy) costs the same.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        iterations_of(stored) != Some(self.iterations.get())
    }

    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        let (rng, iterations, pw) = (self.rng.clone(), self.iterations, password.to_owned());
        tokio::task::spawn_blocking(move || hash_blocking(&rng, iterations, &pw)).await?
    }

    /// Verifies `password` against `stored` in constant time; `None` runs the
    /// same work against a dummy hash and returns false.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<bool, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        let (stored, known) = match stored {
            Some(s) => (s.to_owned(), true),
            None => (self.dummy.as_str().to_owned(), false),
        };
        let pw = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || verify_blocking(&pw, &stored)).await??;
        Ok(ok && known)
    }
}

fn hash_blocking(
    rng: &SystemRandom,
    iterations: NonZeroU32,
    password: &str,
) -> Result<String, PasswordError> {
    let mut salt = [0u8; SALT_LEN];
    rng.fill(&mut salt).map_err(|_| PasswordError::Rng)?;
    let mut out = [0u8; HASH_LEN];
    pbkdf2::derive(ALGORITHM, iterations, &salt, password.as_bytes(), &mut out);
    Ok(format!(
        "{SCHEME}${iterations}${}${}",
        B64.encode(salt),
        B64.encode(out)
    ))
}

fn verify_blocking(password: &str, stored: &str) -> Result<bool, PasswordError> {
    let mut parts = stored.split('$');
    let (Some(SCHEME), Some(iter), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(PasswordError::Malformed);
    };
    let iterations: NonZeroU32 = iter.parse().map_err(|_| PasswordError::Malformed)?;
    let salt = B64.decode(salt).map_err(|_| PasswordError::Malformed)?;
    let hash = B64.decode(hash).map_err(|_| PasswordError::Malformed)?;
    Ok(pbkdf2::verify(ALGORITHM, iterations, &salt, password.as_bytes(), &hash).is_ok())
}

/// The iteration count recorded in a stored hash.
pub fn iterations_of(stored: &str) -> Option<u32> {
    stored.split('$').nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ_per_user() {
        let h = PasswordHasher::new(1_000, 2).unwrap();
        let a = h.hash("correct horse").await.unwrap();
        let b = h.hash("correct horse").await.unwrap();
        assert_ne!(a, b, "salts must differ");
        assert_eq!(iterations_of(&a), Some(1_000));
        assert!(h.verify("correct horse", Some(&a)).await.unwrap());
        assert!(!h.verify("wrong", Some(&a)).await.unwrap());
        assert!(!h.verify("correct horse", None).await.unwrap());
        let salt = a.split('$').nth(2).unwrap();
        assert_eq!(B64.decode(salt).unwrap().len(), SALT_LEN);
    }

    #[tokio::test]
    async fn the_dummy_costs_the_configured_count_and_older_counts_are_rehashed() {
        let old = PasswordHasher::new(1_000, 1).unwrap();
        let h = PasswordHasher::new(2_000, 1).unwrap();
        assert_eq!(iterations_of(&h.dummy), Some(2_000));
        assert_eq!(h.iterations(), 2_000);
        let stored = old.hash("correct horse").await.unwrap();
        // An older count still verifies (it is stored in the hash)...
        assert!(h.verify("correct horse", Some(&stored)).await.unwrap());
        // ...and is due a re-hash at the configured one.
        assert!(h.needs_rehash(&stored));
        let fresh = h.hash("correct horse").await.unwrap();
        assert!(!h.needs_rehash(&fresh));
        assert!(h.needs_rehash("garbage"));
    }

    #[test]
    fn malformed_hashes_are_errors() {
        assert!(verify_blocking("x", "nope").is_err());
        assert!(verify_blocking("x", "pbkdf2-sha256$0$AA$AA").is_err());
    }
}
