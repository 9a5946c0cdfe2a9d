//! The two roles, `customer` and `admin`, as tokens and MongoDB store them.

use serde::{Deserialize, Serialize};

/// What a user may do: customers buy, admins run sales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }
}
