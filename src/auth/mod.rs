//! Accounts and access: password hashing, JWTs, roles, the user store, and the
//! `CurrentUser` taken once from a request's bearer token.

mod jwt;
mod password;
mod role;
mod token_cache;
mod users;

pub use jwt::{Claims, JwtError, Keys};
pub use password::{PasswordError, PasswordHasher, iterations_of};
pub use role::Role;
pub use token_cache::TokenCache;
pub use users::{NewUser, User, UserError, UserStore, normalize_email};

use http::HeaderMap;

use crate::error::{ApiError, ErrorCode};
use crate::http::extract::bearer;
use crate::ids::UserId;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: UserId,
    pub role: Role,
    /// Account creation time (unix seconds) when the token carries it.
    pub created_at: Option<i64>,
}

impl CurrentUser {
    /// Reads and verifies the bearer token: 401 when missing or invalid.
    pub fn from_headers(keys: &Keys, headers: &HeaderMap) -> Result<Self, ApiError> {
        let token = bearer(headers)
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "a bearer token is required"))?;
        Self::from_token(keys, token)
    }

    /// Verifies a token, or recognises one verified before (see
    /// [`Keys::tokens`]); expiry is checked either way.
    pub fn from_token(keys: &Keys, token: &str) -> Result<Self, ApiError> {
        if let Some(user) = keys.tokens().get(token) {
            return Ok(user);
        }
        let claims = keys.verify(token).map_err(|_| {
            ApiError::new(ErrorCode::InvalidToken, "the token is invalid or expired")
        })?;
        let id = UserId::parse(&claims.sub).map_err(|_| {
            ApiError::new(ErrorCode::InvalidToken, "the token is invalid or expired")
        })?;
        let user = Self {
            id,
            role: claims.role,
            created_at: claims.created,
        };
        keys.tokens().insert(token, &user, claims.exp);
        Ok(user)
    }

    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                "this operation needs the admin role",
            ))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}
