//! POST /api/signup and POST /api/signin.

use bytes::Bytes;
use http::Request;
use serde::{Deserialize, Serialize};

use std::net::IpAddr;

use crate::auth::{NewUser, Role, User, normalize_email};
use crate::error::ErrorCode;
use crate::http::error::ApiError;
use crate::http::extract;
use crate::http::response::{HttpResult, created, ok};
use crate::net::ip_key;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupBody {
    name: String,
    email: String,
    password: String,
    role: Option<Role>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SigninBody {
    email: String,
    password: String,
}

#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: Role,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_hex(),
            name: u.name.clone(),
            email: u.email.clone(),
            role: u.role,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SigninView {
    user: UserView,
    access_token: String,
    expires_in: u64,
}

pub async fn signup(state: &AppState, req: Request<Bytes>, ip: IpAddr) -> HttpResult {
    if !state.fraud.is_trusted(ip) {
        state
            .fraud
            .limited(state.fraud.signup_ip.check(&ip_key(ip)), ip, None, None)?;
    }
    let (parts, body) = req.into_parts();
    let b: SignupBody = extract::json(&parts.headers, &body)?;
    let role = b.role.unwrap_or_default();
    if role == Role::Admin {
        // Only an admin may create another admin.
        let caller = crate::http::extract::current_user(state, &parts.headers).map_err(|_| {
            ApiError::new(
                ErrorCode::Forbidden,
                "only an admin can create an admin account",
            )
        })?;
        if !caller.is_admin() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only an admin can create an admin account",
            ));
        }
    }
    let new = NewUser::parse(&b.name, &b.email, &b.password, role)
        .map_err(|(f, m)| ApiError::field(f, m))?;
    let user = create_user(state, &new).await?;
    created(&UserView::from(&user))
}

pub(crate) async fn create_user(state: &AppState, new: &NewUser) -> Result<User, ApiError> {
    let hash = state.hasher.hash(&new.password).await?;
    Ok(state.users.insert(new, hash).await?)
}

/// POST /api/signin. The router has already applied the per-address rate
/// and failure budget (`Fraud::admit_signin`).
pub async fn signin(state: &AppState, req: Request<Bytes>, ip: IpAddr) -> HttpResult {
    let trusted = state.fraud.is_trusted(ip);
    let (parts, body) = req.into_parts();
    let b: SigninBody = extract::json(&parts.headers, &body)?;
    // Per account too, so password guessing is slowed: per account and
    // address first, so a flood from one address cannot lock the owner out
    // elsewhere, then a gentler limit per account alone for guessing spread
    // over many addresses.
    if !trusted && let Some(email) = normalize_email(&b.email) {
        state.fraud.check_signin_account(email, ip)?;
    }
    let invalid = || ApiError::new(ErrorCode::InvalidCredentials, "invalid email or password");
    if b.password.is_empty() || b.password.chars().count() > 128 {
        return Err(invalid());
    }
    // Unknown emails still pay for one hash, so timing does not tell them
    // apart (in a lane of their own, so a flood of them cannot hold up real
    // accounts).
    let user = match normalize_email(&b.email) {
        Some(email) => state.users.by_email(&email).await?,
        None => None,
    };
    let known = user.is_some();
    if !known {
        state.fraud.signin_failed(ip);
    }
    let ok_pw = state
        .hasher
        .verify(&b.password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await?;
    let Some(user) = user.filter(|_| ok_pw) else {
        if known {
            state.fraud.signin_failed(ip); // a wrong password
        }
        return Err(invalid());
    };
    state.fraud.signin_succeeded(ip);
    if state.hasher.needs_rehash(&user.password_hash) {
        rehash(state, &user, &b.password).await;
    }
    let token = state
        .keys
        .issue_for(
            &user.id.to_hex(),
            user.role,
            Some(user.created_at.timestamp_millis() / 1000),
            user.epoch(),
        )
        .map_err(|e| ApiError::internal("token signing failed", &e))?;
    ok(&SigninView {
        user: UserView::from(&user),
        access_token: token,
        expires_in: state.keys.ttl().as_secs(),
    })
}

/// Stores `password` hashed at the configured iteration count in place of an
/// older count, so every account converges on the cost the dummy hash has
/// (no timing split by account age). A failure only delays it to the next
/// sign-in.
async fn rehash(state: &AppState, user: &User, password: &str) {
    let stored = match state.hasher.hash(password).await {
        Ok(h) => state
            .users
            .replace_hash(user.user_id(), &user.password_hash, &h)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match stored {
        Ok(_) => tracing::info!(
            user = %user.id,
            from = crate::auth::iterations_of(&user.password_hash).unwrap_or(0),
            to = state.hasher.iterations(),
            "password re-hashed at the configured iteration count"
        ),
        Err(e) => tracing::warn!(user = %user.id, error = %e, "password re-hash failed"),
    }
}
