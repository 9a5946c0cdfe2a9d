//! Products: create (admin), list, get.

use bytes::Bytes;
use http::Request;
use serde::Deserialize;

use super::{admin, user};
use crate::catalog::{NewProduct, ProductView};
use crate::error::ErrorCode;
use crate::http::error::ApiError;
use crate::http::extract::{self, Query};
use crate::http::response::{HttpResult, created, ok};
use crate::ids::ProductId;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductBody {
    name: String,
    description: Option<String>,
    price: f64,
}

pub async fn create(state: &AppState, req: Request<Bytes>) -> HttpResult {
    admin(state, &req)?;
    let (parts, body) = req.into_parts();
    let b: ProductBody = extract::json(&parts.headers, &body)?;
    let new = NewProduct::parse(&b.name, b.description.as_deref(), b.price)
        .map_err(|(f, m)| ApiError::field(f, m))?;
    let p = state.products.insert(new).await?;
    created(&ProductView::from(&p))
}

pub async fn list(state: &AppState, req: Request<Bytes>) -> HttpResult {
    user(state, &req)?;
    let q = Query::parse(req.uri().query(), &["offset", "limit"])?;
    let offset = q.int("offset", 0, 0, 1_000_000)?;
    let limit = q.int("limit", 100, 1, 1_000)?;
    let items = state.products.list(offset, limit as i64).await?;
    let views: Vec<ProductView> = items.iter().map(ProductView::from).collect();
    ok(&views)
}

pub async fn get(state: &AppState, req: &Request<Bytes>, id: &str) -> HttpResult {
    user(state, req)?;
    let not_found = || ApiError::new(ErrorCode::ProductNotFound, "product not found");
    let id = ProductId::parse(id).map_err(|_| not_found())?;
    let p = state.products.get(id).await?.ok_or_else(not_found)?;
    ok(&ProductView::from(&p))
}
