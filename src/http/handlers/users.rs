//! POST /api/admin/users/{id}/role: an admin changes an account's role. The
//! account's token epoch rises with it, so every token the account holds is
//! refused (`TOKEN_REVOKED`) on every instance within about a second.

use bytes::Bytes;
use http::Request;
use serde::Deserialize;

use super::admin;
use super::auth::UserView;
use crate::auth::Role;
use crate::error::ErrorCode;
use crate::http::error::ApiError;
use crate::http::extract;
use crate::http::response::{HttpResult, ok};
use crate::ids::UserId;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: Role,
}

/// POST /api/admin/users/{id}/role {role: customer|admin}
pub async fn set_role(state: &AppState, req: Request<Bytes>, id: &str) -> HttpResult {
    admin(state, &req)?;
    let id = UserId::parse(id).map_err(|_| ApiError::field("id", "must be a 24-hex-digit id"))?;
    let (parts, body) = req.into_parts();
    let b: RoleBody = extract::json(&parts.headers, &body)?;
    let Some(user) = state.users.set_role(id, b.role).await? else {
        return Err(ApiError::new(ErrorCode::NotFound, "no such user"));
    };
    // MongoDB holds the new role and epoch; until Redis has the epoch too the
    // old tokens still pass, so a failure here is a 503 to retry (a retry
    // raises the epoch again, which is harmless).
    state.epochs.raise(id, user.epoch()).await?;
    tracing::info!(user = %id.hex(), role = b.role.as_str(), epoch = user.epoch(), "role changed; older tokens revoked");
    ok(&UserView::from(&user))
}
