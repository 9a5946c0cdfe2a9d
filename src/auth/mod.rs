//! Accounts and access: password hashing, JWTs, roles, the user store, the
//! `CurrentUser` a verified token stands for (the HTTP layer reads the
//! token), token epochs that revoke a user's tokens, and one-use WebSocket
//! tickets.

mod epochs;
mod jwt;
mod password;
mod role;
mod ticket;
mod token_cache;
mod users;

pub use epochs::{EPOCH_CHANGED, EPOCHS_KEY, TokenEpochs};
pub use jwt::{Claims, JwtError, Keys};
pub use password::{HashLimits, PasswordError, PasswordHasher, iterations_of};
pub use role::Role;
pub use ticket::WsTickets;
pub use token_cache::TokenCache;
pub use users::{NewUser, User, UserError, UserStore, normalize_email};

use crate::error::ErrorCode;
use crate::ids::UserId;

/// Why a caller is not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required")]
    MissingToken,
    #[error("the token is invalid or expired")]
    InvalidToken,
    #[error("this operation needs the admin role")]
    NotAdmin,
    /// The token was issued before its user's epoch was raised (a role
    /// change, or every session revoked): sign in again.
    #[error("the token was revoked; sign in again")]
    Revoked,
}

impl AuthError {
    /// The stable error code the client sees.
    pub fn code(self) -> ErrorCode {
        match self {
            Self::MissingToken => ErrorCode::Unauthorized,
            Self::InvalidToken => ErrorCode::InvalidToken,
            Self::NotAdmin => ErrorCode::Forbidden,
            Self::Revoked => ErrorCode::TokenRevoked,
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: UserId,
    pub role: Role,
    /// Account creation time (unix seconds) when the token carries it.
    pub created_at: Option<i64>,
    /// The token's epoch: below the user's current one, it is revoked.
    pub epoch: u64,
    /// The token's `exp` (unix seconds): a WebSocket closes then.
    pub expires_at: u64,
}

impl CurrentUser {
    /// Verifies a token, or recognises one verified before (see
    /// [`Keys::tokens`]); expiry is checked either way.
    pub fn from_token(keys: &Keys, token: &str) -> Result<Self, AuthError> {
        if let Some(user) = keys.tokens().get(token) {
            return Ok(user);
        }
        let claims = keys.verify(token).map_err(|_| AuthError::InvalidToken)?;
        let id = UserId::parse(&claims.sub).map_err(|_| AuthError::InvalidToken)?;
        let user = Self {
            id,
            role: claims.role,
            created_at: claims.created,
            epoch: claims.epoch,
            expires_at: claims.exp,
        };
        keys.tokens().insert(token, &user, claims.exp);
        Ok(user)
    }

    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), AuthError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(AuthError::NotAdmin)
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}
