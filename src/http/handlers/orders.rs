//! GET /api/orders and the admin reconcile report.

use bytes::Bytes;
use http::Request;

use super::{admin, user};
use crate::http::error::ApiError;
use crate::http::extract::Query;
use crate::http::response::{HttpResult, ok};
use crate::ids::{SaleId, UserId};
use crate::orders::OrderView;
use crate::state::AppState;

fn sale_param(q: &Query) -> Result<Option<SaleId>, ApiError> {
    q.get("flashSaleId")
        .map(|s| {
            SaleId::parse(s)
                .map_err(|_| ApiError::field("flashSaleId", "must be a 24-hex-digit id"))
        })
        .transpose()
}

/// Customers see their own orders; admins see a sale's (or everyone's).
pub async fn list(state: &AppState, req: &Request<Bytes>) -> HttpResult {
    let caller = user(state, req)?;
    let q = Query::parse(
        req.uri().query(),
        &["flashSaleId", "userId", "offset", "limit"],
    )?;
    let offset = q.int("offset", 0, 0, 10_000_000)?;
    let limit = q.int("limit", 100, 1, 1_000)? as i64;
    let sale = sale_param(&q)?;
    let orders = if caller.is_admin() {
        let filter_user = q
            .get("userId")
            .map(|s| {
                UserId::parse(s).map_err(|_| ApiError::field("userId", "must be a 24-hex-digit id"))
            })
            .transpose()?;
        match (sale, filter_user) {
            (Some(s), u) => state.orders.for_sale(s, u, offset, limit).await?,
            (None, Some(u)) => state.orders.for_user(u, offset, limit).await?,
            (None, None) => state.orders.all(offset, limit).await?,
        }
    } else {
        if q.get("userId").is_some_and(|u| u != caller.id.hex()) {
            return Err(ApiError::new(
                crate::error::ErrorCode::Forbidden,
                "customers can only read their own orders",
            ));
        }
        match sale {
            Some(s) => {
                state
                    .orders
                    .for_sale(s, Some(caller.id), offset, limit)
                    .await?
            }
            None => state.orders.for_user(caller.id, offset, limit).await?,
        }
    };
    let views: Vec<OrderView> = orders.iter().map(OrderView::from).collect();
    ok(&views)
}

/// Compares, per sale, the units Redis sold with the orders MongoDB holds.
pub async fn reconcile(state: &AppState, req: &Request<Bytes>) -> HttpResult {
    admin(state, req)?;
    let q = Query::parse(req.uri().query(), &["flashSaleId"])?;
    let report = match sale_param(&q)? {
        Some(s) => vec![state.reconciler.sale(s).await?],
        None => state.reconciler.all().await?,
    };
    ok(&report)
}
