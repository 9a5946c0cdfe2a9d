//! POST /api/purchase-product: validate, one script call, map the outcome.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, StatusCode};
use serde::{Deserialize, Serialize};

use super::user;
use crate::auth::Role;
use crate::engine::{Placed, PurchaseOutcome, PurchaseRequest, Refusal};
use crate::error::ErrorCode;
use crate::http::error::ApiError;
use crate::http::extract;
use crate::http::response::{HttpResult, json};
use crate::ids::{SaleId, UserId};
use crate::orders::order_id;
use crate::state::AppState;

/// Largest quantity accepted at all; the sale's own limit is usually far lower.
pub const MAX_QUANTITY: u32 = 1_000_000;
const IDEMPOTENCY_HEADER: &str = "idempotency-key";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PurchaseBody {
    pub flash_sale_id: String,
    /// Required: a body without it is refused naming the field, never read
    /// as 1. A JSON integer; fractions, strings and numbers beyond u32 are
    /// refused by the decoder, zero and anything above [`MAX_QUANTITY`] below.
    pub quantity: u32,
}

/// The 201 body of a purchase.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseView {
    id: String,
    user_id: String,
    flash_sale_id: String,
    quantity: i64,
    unit_price: f64,
    total_price: f64,
    purchased_at: String,
    remaining_units: i64,
}

/// The 201 body of order `o` of `sale` for `user`.
pub fn view(sale: SaleId, user: UserId, o: &Placed) -> PurchaseView {
    PurchaseView {
        id: order_id(sale, o.seq),
        user_id: user.hex(),
        flash_sale_id: sale.hex(),
        quantity: o.quantity,
        unit_price: crate::catalog::cents_to_units(o.unit_price_cents),
        total_price: crate::catalog::cents_to_units(o.unit_price_cents * o.quantity),
        purchased_at: crate::clock::rfc3339_ms(o.purchased_at_ms),
        remaining_units: o.remaining,
    }
}

/// A valid Idempotency-Key: 1 to 128 visible ASCII characters.
pub fn parse_idempotency_key(v: &HeaderValue) -> Result<&str, ApiError> {
    let s = v.to_str().unwrap_or("");
    if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::field(
            "Idempotency-Key",
            "must be 1 to 128 visible ASCII characters",
        ));
    }
    Ok(s)
}

pub async fn purchase(state: &AppState, req: Request<Bytes>, peer: SocketAddr) -> HttpResult {
    let caller = user(state, &req)?;
    if caller.role != Role::Customer {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only customers can purchase",
        ));
    }
    let (parts, body) = req.into_parts();
    let b: PurchaseBody = extract::json(&parts.headers, &body)?;
    if b.quantity == 0 || b.quantity > MAX_QUANTITY {
        return Err(ApiError::field(
            "quantity",
            format!("must be an integer from 1 to {MAX_QUANTITY}"),
        ));
    }
    let sale = SaleId::parse(b.flash_sale_id.trim())
        .map_err(|_| ApiError::field("flashSaleId", "must be a 24-hex-digit id"))?;
    let mut keys = parts.headers.get_all(IDEMPOTENCY_HEADER).iter();
    let idempotency_key = match (keys.next(), keys.next()) {
        (Some(v), None) => Some(parse_idempotency_key(v)?),
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(ApiError::field("Idempotency-Key", "must be given once"));
        }
    };
    let ip = crate::net::client_ip(peer.ip(), &parts.headers, &state.config.http.trust_proxy);
    // A sale this instance knows is over is answered at once: no stock can
    // move, so the abuse rules have nothing to protect.
    if idempotency_key.is_none()
        && let Some(refusal) = state.engine.closed_answer(sale)
    {
        crate::metrics::purchase_outcome(refusal.label());
        if refusal == Refusal::SoldOut {
            return Ok(sold_out());
        }
        return Err(refusal.into());
    }
    // Abuse rules act before any stock moves.
    state.fraud.check_purchase(&caller, ip, sale)?;
    let request = PurchaseRequest {
        sale,
        user: caller.id,
        quantity: b.quantity,
        ip,
        idempotency_key,
    };
    let outcome = state.engine.purchase(&request).await?;
    state.fraud.after_purchase(caller.id, ip, sale, &outcome);
    crate::metrics::purchase_outcome(outcome.label());
    if let PurchaseOutcome::Accepted { order, .. } = &outcome {
        metrics::counter!(crate::metrics::UNITS_SOLD_TOTAL)
            .increment(order.quantity.unsigned_abs());
    }
    match outcome {
        PurchaseOutcome::Accepted { order, .. } => {
            Ok(json(StatusCode::CREATED, &view(sale, caller.id, &order)))
        }
        PurchaseOutcome::Duplicate { order } => {
            let mut res = json(StatusCode::CREATED, &view(sale, caller.id, &order));
            res.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(res)
        }
        PurchaseOutcome::Refused(refusal) => Err(refusal.into()),
    }
}

/// The 409 SOLD_OUT answer, rendered once: after a sell-out this is most of
/// the traffic, and it is the same bytes for every buyer and every sale.
fn sold_out() -> crate::http::response::HttpResponse {
    use crate::http::response::{error_body, error_bytes};
    static BODY: std::sync::LazyLock<bytes::Bytes> =
        std::sync::LazyLock::new(|| error_body(&Refusal::SoldOut.into()));
    error_bytes(ErrorCode::SoldOut, BODY.clone())
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn the_pre_rendered_sold_out_answer_is_the_rendered_refusal() {
        let fresh = crate::http::response::error(&Refusal::SoldOut.into());
        let kept = sold_out();
        assert_eq!(kept.status(), StatusCode::CONFLICT);
        assert_eq!(kept.status(), fresh.status());
        assert_eq!(kept.headers(), fresh.headers());
        let body = |r: crate::http::response::HttpResponse| async move {
            r.into_body().collect().await.unwrap().to_bytes()
        };
        let kept = body(kept).await;
        assert_eq!(kept, body(fresh).await);
        let v: serde_json::Value = serde_json::from_slice(&kept).unwrap();
        assert_eq!(v["error"]["code"], "SOLD_OUT");
        assert_eq!(v["error"]["details"]["availableUnits"], 0);
    }
}
