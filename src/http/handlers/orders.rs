//! GET /api/orders and the admin reconcile report.

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, StatusCode};

use super::{admin, user};
use crate::error::StoreError;
use crate::http::error::ApiError;
use crate::http::extract::Query;
use crate::http::response::{HttpResult, json};
use crate::ids::{SaleId, UserId};
use crate::orders::{Order, OrderStatus, OrderView};
use crate::state::AppState;

/// Set on a listing made while MongoDB could not be reached: the page holds
/// the pending orders only.
pub const RECORDED_HEADER: &str = "x-orders-recorded";

fn sale_param(q: &Query) -> Result<Option<SaleId>, ApiError> {
    q.get("flashSaleId")
        .map(|s| {
            SaleId::parse(s)
                .map_err(|_| ApiError::field("flashSaleId", "must be a 24-hex-digit id"))
        })
        .transpose()
}

/// Customers see their own orders; admins see a sale's (or everyone's).
/// Orders still in the write-behind are listed too, as "pending".
pub async fn list(state: &AppState, req: &Request<Bytes>) -> HttpResult {
    let caller = user(state, req)?;
    let q = Query::parse(
        req.uri().query(),
        &["flashSaleId", "userId", "offset", "limit"],
    )?;
    let offset = q.int("offset", 0, 0, 10_000_000)?;
    let limit = q.int("limit", 100, 1, 1_000)?;
    let sale = sale_param(&q)?;
    let filter_user = q
        .get("userId")
        .map(|s| {
            UserId::parse(s).map_err(|_| ApiError::field("userId", "must be a 24-hex-digit id"))
        })
        .transpose()?;
    let scope = if caller.is_admin() {
        Scope {
            sale,
            user: filter_user,
        }
    } else {
        if filter_user.is_some_and(|u| u != caller.id) {
            return Err(ApiError::new(
                crate::error::ErrorCode::Forbidden,
                "customers can only read their own orders",
            ));
        }
        Scope {
            sale,
            user: Some(caller.id),
        }
    };
    let (page, complete) = scope.page(state, offset, limit).await?;
    let views: Vec<OrderView> = page.iter().map(|(o, s)| OrderView::new(o, *s)).collect();
    let mut res = json(StatusCode::OK, &views);
    if !complete {
        res.headers_mut()
            .insert(RECORDED_HEADER, HeaderValue::from_static("unavailable"));
    }
    Ok(res)
}

/// Whose orders a listing holds.
#[derive(Debug, Clone, Copy)]
struct Scope {
    sale: Option<SaleId>,
    user: Option<UserId>,
}

impl Scope {
    /// One page over the pending orders (Redis, read first) and the recorded
    /// ones (MongoDB, read after, so an order written in between is in
    /// MongoDB's answer). Without a sale, newest first: the pending orders,
    /// then the recorded ones. For a sale, by sequence: the recorded ones,
    /// then the pending ones. An order in both is listed once, recorded.
    /// The flag is false when MongoDB was unreachable and only pending
    /// orders are listed.
    async fn page(
        self,
        state: &AppState,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<(Order, OrderStatus)>, bool), ApiError> {
        let mut pending = state.pending_orders.find(self.sale, self.user).await?;
        let p = pending.len() as u64;
        let window = |pending: &mut Vec<Order>, start: u64, take: u64| -> Vec<Order> {
            let start = start.min(p) as usize;
            let end = (start as u64 + take).min(p) as usize;
            pending.drain(start..end).collect()
        };
        let (window, recorded) = if self.sale.is_none() {
            pending.sort_by_key(|o| std::cmp::Reverse((o.purchased_at, o.seq)));
            let window = window(&mut pending, offset, limit);
            let rest = limit - window.len() as u64;
            let recorded = if rest > 0 {
                self.recorded(state, offset.saturating_sub(p), rest).await
            } else {
                Ok(Vec::new())
            };
            (window, recorded)
        } else {
            pending.sort_by_key(|o| o.seq);
            match self.recorded(state, offset, limit).await {
                Ok(recorded) => {
                    let k = recorded.len() as u64;
                    if k == limit {
                        (Vec::new(), Ok(recorded))
                    } else {
                        // Where the pending orders start: after every recorded one.
                        let total = if k > 0 {
                            Ok(offset + k)
                        } else {
                            self.count(state).await
                        };
                        match total {
                            Ok(total) => {
                                let w =
                                    window(&mut pending, offset.saturating_sub(total), limit - k);
                                (w, Ok(recorded))
                            }
                            Err(e) => (window(&mut pending, offset, limit), Err(e)),
                        }
                    }
                }
                Err(e) => (window(&mut pending, offset, limit), Err(e)),
            }
        };
        let (recorded, complete) = match recorded {
            Ok(r) => (r, true),
            Err(e) if e.is_unavailable() => (Vec::new(), false),
            Err(e) => return Err(e.into()),
        };
        Ok((merge(window, recorded, self.sale.is_none()), complete))
    }

    async fn recorded(
        self,
        state: &AppState,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<Order>, StoreError> {
        let limit = limit as i64;
        match (self.sale, self.user) {
            (Some(s), u) => state.orders.for_sale(s, u, offset, limit).await,
            (None, Some(u)) => state.orders.for_user(u, offset, limit).await,
            (None, None) => state.orders.all(offset, limit).await,
        }
    }

    async fn count(self, state: &AppState) -> Result<u64, StoreError> {
        match self.sale {
            Some(s) => state.orders.count_for_sale(s, self.user).await,
            None => Ok(0),
        }
    }
}

/// A page from its pending and recorded parts, pending first or last; a
/// pending order MongoDB answered too (written meanwhile) is listed once,
/// as recorded.
fn merge(
    pending: Vec<Order>,
    recorded: Vec<Order>,
    pending_first: bool,
) -> Vec<(Order, OrderStatus)> {
    let pending: Vec<_> = pending
        .into_iter()
        .filter(|p| !recorded.iter().any(|r| r.id == p.id))
        .map(|o| (o, OrderStatus::Pending))
        .collect();
    let recorded = recorded.into_iter().map(|o| (o, OrderStatus::Recorded));
    if pending_first {
        pending.into_iter().chain(recorded).collect()
    } else {
        recorded.chain(pending).collect()
    }
}

/// Compares, per sale, the units Redis sold with the orders MongoDB holds.
pub async fn reconcile(state: &AppState, req: &Request<Bytes>) -> HttpResult {
    admin(state, req)?;
    let q = Query::parse(req.uri().query(), &["flashSaleId"])?;
    let report = match sale_param(&q)? {
        Some(s) => vec![state.reconciler.sale(s).await?],
        None => state.reconciler.all().await?,
    };
    crate::http::response::ok(&report)
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{DateTime, oid::ObjectId};

    use super::*;

    fn order(seq: i64) -> Order {
        Order {
            id: format!("s-{seq}"),
            flash_sale_id: ObjectId::new(),
            user_id: ObjectId::new(),
            quantity: 1,
            unit_price_cents: 100,
            purchased_at: DateTime::from_millis(seq),
            seq,
            ip: String::new(),
        }
    }

    fn listed(v: &[(Order, OrderStatus)]) -> Vec<(i64, OrderStatus)> {
        v.iter().map(|(o, s)| (o.seq, *s)).collect()
    }

    #[test]
    fn an_order_in_both_parts_is_listed_once_as_recorded() {
        let page = merge(vec![order(3), order(2)], vec![order(2), order(1)], true);
        use OrderStatus::{Pending, Recorded};
        assert_eq!(
            listed(&page),
            vec![(3, Pending), (2, Recorded), (1, Recorded)]
        );
        let page = merge(vec![order(2), order(3)], vec![order(1), order(2)], false);
        assert_eq!(
            listed(&page),
            vec![(1, Recorded), (2, Recorded), (3, Pending)]
        );
    }
}
