//! Reading requests: size-limited strict JSON bodies, query strings, the
//! bearer token and the caller it stands for (checked against token epochs
//! and the blocklist here, for every route); the client's address is
//! `crate::net::client_ip`.

use bytes::Bytes;
use http::HeaderMap;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::auth::{AuthError, CurrentUser};
use crate::error::ErrorCode;
use crate::http::error::ApiError;
use crate::state::AppState;

/// Reads the whole body, refusing more than `limit` bytes with 413 and a
/// body that has not fully arrived within `deadline` with 408: a client
/// sending a byte at a time costs only its own connection.
pub async fn body_bytes(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(deadline, read_body(headers, body, limit)).await {
        Ok(read) => read,
        Err(_) => Err(ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} ms",
                deadline.as_millis()
            ),
        )),
    }
}

async fn read_body(headers: &HeaderMap, body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {limit} bytes"),
        )
        .with_details(serde_json::json!({ "limit": limit }))
    };
    if let Some(len) = headers.get(CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::validation("invalid Content-Length header"))?;
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(ApiError::validation("the request body could not be read")),
    }
}

/// Parses a JSON body (already read by the router, within its size and time
/// limits) strictly: unknown fields, wrong types and malformed JSON give 400
/// `VALIDATION_FAILED`; an empty body is treated as `{}` so that required
/// fields are reported by name.
pub fn json<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    if headers.get_all(CONTENT_TYPE).iter().nth(1).is_some() {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "exactly one Content-Type header is allowed",
        ));
    }
    if let Some(ct) = headers.get(CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !(mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "request body must be application/json",
            ));
        }
    }
    parse_json(body)
}

/// Strict JSON decoding of a complete body.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "malformed JSON"
            }
            _ => "invalid request body",
        };
        // serde's message names the field and the expected type; it holds no
        // internal detail, only facts about the client's input.
        let mut details = serde_json::json!({ "line": e.line(), "column": e.column() });
        if let Some(field) = named_field(&e.to_string()) {
            details["field"] = field.into();
        }
        ApiError::validation(format!("{kind}: {e}")).with_details(details)
    })
}

/// The field a missing-, unknown- or duplicate-field message of serde names,
/// so clients read it from `details.field` as for every other field error.
fn named_field(message: &str) -> Option<&str> {
    ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|p| message.split_once(p))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(field, _)| field)
}

/// Query string parameters, refusing names outside `allowed` and repeats.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(ApiError::field(&k, "unknown query parameter"));
            }
            if pairs.iter().any(|(pk, _)| *pk == k) {
                return Err(ApiError::field(&k, "given more than once"));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self { pairs })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// An integer parameter within `min..=max`, or `default` when absent.
    pub fn int(&self, key: &str, default: u64, min: u64, max: u64) -> Result<u64, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::field(
                    key,
                    format!("must be an integer from {min} to {max}"),
                )),
            },
        }
    }
}

/// The caller a request's bearer token stands for: 401 when it is missing,
/// invalid or revoked, 403 when its user is blocked.
pub fn current_user(state: &AppState, headers: &HeaderMap) -> Result<CurrentUser, ApiError> {
    let token = bearer(headers).ok_or(AuthError::MissingToken)?;
    authenticate(state, token)
}

/// The one place a token becomes a [`CurrentUser`], for every route and the
/// WebSocket handshake: the signature and expiry (`auth`), the token epoch
/// (401 `TOKEN_REVOKED` after a role change), and the user blocklist (403
/// `BLOCKED`). All three are answered from memory.
pub fn authenticate(state: &AppState, token: &str) -> Result<CurrentUser, ApiError> {
    let user = CurrentUser::from_token(&state.keys, token)?;
    if state.epochs.is_revoked(&user) {
        return Err(AuthError::Revoked.into());
    }
    state.fraud.check_user(user.id)?;
    Ok(user)
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    // Two Authorization headers are ambiguous: treat the request as unauthenticated.
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    let v = first.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::config::TrustProxy;
    use http::HeaderValue;
    use proptest::strategy::Strategy;

    #[test]
    fn bearer_requires_the_scheme() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn query_refuses_unknown_and_repeated_names() {
        assert!(Query::parse(Some("a=1&b=2"), &["a"]).is_err());
        assert!(Query::parse(Some("a=1&a=2"), &["a"]).is_err());
        let q = Query::parse(Some("a=5"), &["a"]).unwrap();
        assert_eq!(q.int("a", 1, 1, 10).unwrap(), 5);
        assert!(q.int("a", 1, 6, 10).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 2_000, ..Default::default() })]

        /// Arbitrary bytes never panic the strict decoder, and every failure
        /// is a 400 validation error.
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let r = parse_json::<crate::http::handlers::purchase::PurchaseBody>(&bytes);
            if let Err(e) = r {
                proptest::prop_assert_eq!(e.code, ErrorCode::ValidationFailed);
            }
            let r = parse_json::<crate::sales::SaleInput>(&bytes);
            if let Err(e) = r {
                proptest::prop_assert_eq!(e.code, ErrorCode::ValidationFailed);
            }
        }

        /// JSON-shaped input with random keys and values: same promise.
        #[test]
        fn json_shaped_bodies_never_panic(
            key in "[a-zA-Z$]{0,12}",
            value in proptest::prop_oneof![
                proptest::num::i64::ANY.prop_map(|n| n.to_string()),
                proptest::num::f64::ANY.prop_map(|n| format!("{n:e}")),
                "\\PC{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
                proptest::strategy::Just("null".to_owned()),
                proptest::strategy::Just("{\"$gt\":\"\"}".to_owned()),
                proptest::strategy::Just("[1,2]".to_owned()),
            ],
        ) {
            let body = format!("{{\"flashSaleId\":\"65f1c0ffee0123456789abcd\",\"{key}\":{value}}}");
            let r = parse_json::<crate::http::handlers::purchase::PurchaseBody>(body.as_bytes());
            match r {
                Ok(b) => proptest::prop_assert!(key == "quantity" || key == "flashSaleId", "{body} parsed as {b:?}"),
                Err(e) => proptest::prop_assert_eq!(e.code, ErrorCode::ValidationFailed),
            }
        }

        /// Query strings and forwarded-for headers of any shape are handled.
        #[test]
        fn arbitrary_queries_and_forwarded_headers_never_panic(q in "\\PC{0,80}", xff in "[0-9a-f:., ]{0,80}") {
            let parsed = Query::parse(Some(&q), &["offset", "limit", "flashSaleId"]);
            if let Ok(p) = parsed {
                let _ = p.int("limit", 1, 1, 100);
            }
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&xff) {
                h.insert("x-forwarded-for", v);
            }
            let peer: IpAddr = "10.0.0.1".parse().unwrap();
            let hops = TrustProxy::Hops { hops: 3, from: vec!["10.0.0.0/8".parse().unwrap()] };
            let _ = crate::net::client_ip(peer, &h, &hops);
            let _ = crate::net::client_ip(peer, &h, &"10.0.0.0/8".parse::<TrustProxy>().unwrap());
        }
    }

    #[test]
    fn a_purchase_body_without_quantity_is_refused_naming_the_field() {
        use crate::http::handlers::purchase::PurchaseBody;
        let e = parse_json::<PurchaseBody>(br#"{"flashSaleId":"65f1c0ffee0123456789abcd"}"#)
            .expect_err("quantity is required");
        assert_eq!(e.code, ErrorCode::ValidationFailed);
        assert!(e.message.contains("quantity"), "{}", e.message);
        assert_eq!(e.details.as_deref().unwrap()["field"], "quantity");
        let e = parse_json::<PurchaseBody>(br#"{"quantity":1,"extra":true}"#).unwrap_err();
        assert_eq!(e.details.as_deref().unwrap()["field"], "extra");
    }

    #[test]
    fn duplicated_authorization_headers_authenticate_nobody() {
        let mut h = HeaderMap::new();
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn malformed_json_is_a_validation_error() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct B {
            a: u32,
        }
        assert_eq!(
            parse_json::<B>(b"{").unwrap_err().code,
            ErrorCode::ValidationFailed
        );
        assert_eq!(
            parse_json::<B>(b"{\"a\":1,\"b\":2}").unwrap_err().code,
            ErrorCode::ValidationFailed
        );
        assert_eq!(
            parse_json::<B>(b"{\"a\":\"1\"}").unwrap_err().code,
            ErrorCode::ValidationFailed
        );
        assert_eq!(parse_json::<B>(b"{\"a\":1}").unwrap().a, 1);
    }
}
