//! HS256 access tokens: algorithm pinned, `exp` and `iss` required.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::Role;
use super::token_cache::{TOKEN_CACHE_ENTRIES, TokenCache};

/// Seconds a token is still accepted after its `exp`.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iss: String,
    pub iat: u64,
    pub exp: u64,
    /// When the account was created (unix seconds), for the new-account rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// The user's token epoch at issue (`auth::TokenEpochs`); tokens from
    /// before epochs existed have none and count as 0.
    #[serde(default)]
    pub epoch: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid token: {0}")]
pub struct JwtError(#[from] jsonwebtoken::errors::Error);

/// Signing and verification keys, built once from SECRET_KEY.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The HS256 key with its padded states computed once: jsonwebtoken 9
    /// derives them from the secret again for every token it verifies,
    /// which was a third of the hashing a first request with a new token
    /// cost.
    mac: hmac::Key,
    /// The claim checks (issuer, expiry, required claims), run after
    /// [`Keys::verify`] has checked the signature with `mac`.
    claims: Validation,
    header: Header,
    issuer: String,
    ttl: Duration,
    tokens: TokenCache,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("issuer", &self.issuer)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Keys {
    pub fn new(secret: &[u8], issuer: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = LEEWAY_SECS;
        let mut claims = validation;
        claims.insecure_disable_signature_validation();
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".to_owned());
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            mac: hmac::Key::new(hmac::HMAC_SHA256, secret),
            claims,
            header,
            issuer: issuer.to_owned(),
            ttl,
            tokens: TokenCache::new(TOKEN_CACHE_ENTRIES, LEEWAY_SECS),
        }
    }

    /// Tokens that passed [`Keys::verify`], remembered.
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A signed token for `sub` valid for the configured lifetime.
    pub fn issue(&self, sub: &str, role: Role) -> Result<String, JwtError> {
        self.issue_for(sub, role, None, 0)
    }

    /// A token that also carries the account's creation time and its token
    /// epoch (see `auth::TokenEpochs`).
    pub fn issue_for(
        &self,
        sub: &str,
        role: Role,
        created: Option<i64>,
        epoch: u64,
    ) -> Result<String, JwtError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            sub: sub.to_owned(),
            role,
            iss: self.issuer.clone(),
            iat: now,
            exp: now + self.ttl.as_secs(),
            created,
            epoch,
        };
        Ok(encode(&self.header, &claims, &self.encoding)?)
    }

    /// Verifies signature, algorithm (HS256 only), issuer and expiry. The
    /// signature is checked first, in constant time, over the header and
    /// claims as sent; nothing in the token is read before it passes.
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let invalid = || JwtError(ErrorKind::InvalidSignature.into());
        let (signed, signature) = token.rsplit_once('.').ok_or_else(invalid)?;
        // An HS256 signature is 32 bytes; room for more, so that a longer
        // one fails the comparison rather than the decoding.
        let mut mac = [0u8; 64];
        let n = URL_SAFE_NO_PAD
            .decode_slice(signature, &mut mac)
            .map_err(|_| invalid())?;
        hmac::verify(&self.mac, signed.as_bytes(), &mac[..n]).map_err(|_| invalid())?;
        let data = decode::<Claims>(token, &self.decoding, &self.claims)?;
        if data.header.alg != Algorithm::HS256 {
            return Err(JwtError(ErrorKind::InvalidAlgorithm.into()));
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn keys() -> Keys {
        Keys::new(&[7u8; 32], "flashsale", Duration::from_secs(60))
    }

    #[test]
    fn issued_tokens_verify() {
        let k = keys();
        let t = k.issue("abc", Role::Admin).unwrap();
        let c = k.verify(&t).unwrap();
        assert_eq!(c.sub, "abc");
        assert_eq!(c.role, Role::Admin);
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let k = keys();
        let payload = URL_SAFE_NO_PAD
            .encode(br#"{"sub":"a","role":"admin","iss":"flashsale","iat":1,"exp":99999999999}"#);
        let none = format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#)
        );
        assert!(k.verify(&none).is_err());
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                sub: "a".into(),
                role: Role::Admin,
                iss: "flashsale".into(),
                iat: 1,
                exp: 99_999_999_999,
                created: None,
                epoch: 0,
            },
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap();
        assert!(k.verify(&hs512).is_err());
        // An HS256 signature under another header's name is still refused.
        let (signed, sig) = {
            let t = k.issue("a", Role::Admin).unwrap();
            let (s, g) = t.rsplit_once('.').unwrap();
            (s.to_owned(), g.to_owned())
        };
        let (_, payload) = signed.split_once('.').unwrap();
        let relabelled = format!(
            "{}.{payload}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS384","typ":"JWT"}"#)
        );
        let mac = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]),
            relabelled.as_bytes(),
        );
        let forged = format!("{relabelled}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
        assert!(k.verify(&forged).is_err());
        assert!(k.verify(&format!("{signed}.{sig}")).is_ok());
    }

    #[test]
    fn tampered_truncated_and_padded_tokens_are_refused() {
        let k = keys();
        let t = k.issue("abc", Role::Customer).unwrap();
        assert!(k.verify(&t).is_ok());
        let (signed, sig) = t.rsplit_once('.').unwrap();
        let (header, payload) = signed.split_once('.').unwrap();
        // The claims changed, the signature kept.
        let admin = URL_SAFE_NO_PAD
            .encode(br#"{"sub":"abc","role":"admin","iss":"flashsale","iat":1,"exp":99999999999}"#);
        assert!(k.verify(&format!("{header}.{admin}.{sig}")).is_err());
        assert!(k.verify(&format!("{header}.{payload}.{payload}")).is_err());
        for cut in [1, 2, sig.len()] {
            assert!(
                k.verify(&format!("{signed}.{}", &sig[..sig.len() - cut]))
                    .is_err()
            );
        }
        assert!(k.verify(&format!("{signed}.{sig}AAAA")).is_err());
        assert!(k.verify(&format!("{signed}.{}", "A".repeat(400))).is_err());
        assert!(k.verify(&format!("{signed}.{sig}=")).is_err());
        assert!(k.verify(signed).is_err());
        assert!(k.verify("").is_err());
        assert!(k.verify("...").is_err());
    }

    #[test]
    fn expired_wrong_issuer_and_wrong_key_are_refused() {
        let k = keys();
        let mk = |iss: &str, exp: u64, key: &[u8]| {
            encode(
                &Header::new(Algorithm::HS256),
                &Claims {
                    sub: "a".into(),
                    role: Role::Customer,
                    iss: iss.into(),
                    iat: 1,
                    exp,
                    created: None,
                    epoch: 0,
                },
                &EncodingKey::from_secret(key),
            )
            .unwrap()
        };
        assert!(k.verify(&mk("flashsale", 1_000, &[7u8; 32])).is_err());
        assert!(k.verify(&mk("other", 99_999_999_999, &[7u8; 32])).is_err());
        assert!(
            k.verify(&mk("flashsale", 99_999_999_999, &[8u8; 32]))
                .is_err()
        );
        assert!(
            k.verify(&mk("flashsale", 99_999_999_999, &[7u8; 32]))
                .is_ok()
        );
    }
}
