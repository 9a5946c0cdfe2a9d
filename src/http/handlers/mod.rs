//! One file per area; each handler extracts, calls its module, renders.

pub mod auth;
pub mod console;
pub mod fraud;
pub mod health;
pub mod leaderboard;
pub mod metrics;
pub mod openapi;
pub mod orders;
pub mod products;
pub mod purchase;
pub mod sales;
pub mod users;
pub mod ws;

use http::Request;

use crate::auth::CurrentUser;
use crate::http::error::ApiError;
use crate::state::AppState;

/// The signed-in caller.
pub(crate) fn user<B>(state: &AppState, req: &Request<B>) -> Result<CurrentUser, ApiError> {
    super::extract::current_user(state, req.headers())
}

/// The signed-in caller, who must be an admin.
pub(crate) fn admin<B>(state: &AppState, req: &Request<B>) -> Result<CurrentUser, ApiError> {
    let u = user(state, req)?;
    u.require_admin()?;
    Ok(u)
}
