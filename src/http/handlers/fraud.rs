//! Admin endpoints of the fraud controls: the blocklist and the fraud log.

use bytes::Bytes;
use http::Request;
use serde::Deserialize;
use serde_json::json;

use super::admin;
use crate::error::ErrorCode;
use crate::fraud::{EntryKind, EventView, NewEntry};
use crate::http::error::ApiError;
use crate::http::extract::{self, Query};
use crate::http::response::{HttpResult, created, ok};
use crate::ids::{SaleId, UserId};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EntryBody {
    #[serde(rename = "type")]
    kind: String,
    value: String,
    reason: Option<String>,
    ttl_seconds: Option<u64>,
}

/// GET /api/admin/blocklist
pub async fn list_blocklist(state: &AppState, req: &Request<Bytes>) -> HttpResult {
    admin(state, req)?;
    Query::parse(req.uri().query(), &[])?;
    ok(&state.fraud.blocklist.list().await?)
}

/// POST /api/admin/blocklist {type: user|ip|allow, value, reason?, ttlSeconds?}
pub async fn add_to_blocklist(state: &AppState, req: Request<Bytes>) -> HttpResult {
    let caller = admin(state, &req)?;
    let (parts, body) = req.into_parts();
    let b: EntryBody = extract::json(&parts.headers, &body)?;
    let new = NewEntry::parse(&b.kind, &b.value, b.reason.as_deref(), b.ttl_seconds)
        .map_err(|(f, m)| ApiError::field(f, m))?;
    let entry = state.fraud.blocklist.add(new, &caller.id.hex()).await?;
    created(&entry)
}

/// DELETE /api/admin/blocklist?type=&value=
pub async fn remove_from_blocklist(state: &AppState, req: &Request<Bytes>) -> HttpResult {
    admin(state, req)?;
    let q = Query::parse(req.uri().query(), &["type", "value"])?;
    let kind = q
        .get("type")
        .ok_or_else(|| ApiError::field("type", "is required"))?;
    let value = q
        .get("value")
        .ok_or_else(|| ApiError::field("value", "is required"))?;
    let entry = NewEntry::parse(kind, value, None, None).map_err(|(f, m)| ApiError::field(f, m))?;
    let kind: EntryKind = entry.kind;
    if !state.fraud.blocklist.remove(kind, &entry.value).await? {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "no such blocklist entry",
        ));
    }
    ok(&json!({ "removed": true, "type": kind, "value": entry.value }))
}

/// GET /api/fraud/events?flashSaleId=&userId=&rule=&offset=&limit=
pub async fn events(state: &AppState, req: &Request<Bytes>) -> HttpResult {
    admin(state, req)?;
    let q = Query::parse(
        req.uri().query(),
        &["flashSaleId", "userId", "rule", "offset", "limit"],
    )?;
    let sale = q
        .get("flashSaleId")
        .map(|s| {
            SaleId::parse(s)
                .map(SaleId::hex)
                .map_err(|_| ApiError::field("flashSaleId", "must be a 24-hex-digit id"))
        })
        .transpose()?;
    let user = q
        .get("userId")
        .map(|s| {
            UserId::parse(s)
                .map(UserId::hex)
                .map_err(|_| ApiError::field("userId", "must be a 24-hex-digit id"))
        })
        .transpose()?;
    let rule = q.get("rule");
    if let Some(r) = rule
        && (r.is_empty()
            || r.len() > 64
            || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        return Err(ApiError::field(
            "rule",
            "must be a rule name such as multi-account-ip",
        ));
    }
    let offset = q.int("offset", 0, 0, 10_000_000)?;
    let limit = q.int("limit", 100, 1, 1_000)? as i64;
    let events = state
        .fraud_store
        .list(sale.as_deref(), user.as_deref(), rule, offset, limit)
        .await?;
    let views: Vec<EventView> = events.iter().map(EventView::from).collect();
    ok(&views)
}
