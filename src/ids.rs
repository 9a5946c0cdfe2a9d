//! Typed ids, so a sale id can never be passed where a user id is expected.
//! All are MongoDB ObjectIds shown as 24 lowercase hex digits.

use std::fmt;

use mongodb::bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

macro_rules! object_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("The id of a ", $what, ".")]
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub ObjectId);

        impl $name {
            pub fn new() -> Self {
                Self(ObjectId::new())
            }

            /// Parses 24 hex digits (either case).
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                if s.len() != 24 {
                    return Err(InvalidId);
                }
                ObjectId::parse_str(s).map(Self).map_err(|_| InvalidId)
            }

            pub fn oid(self) -> ObjectId {
                self.0
            }

            pub fn hex(self) -> String {
                self.0.to_hex()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

object_id!(UserId, "user");
object_id!(ProductId, "product");
object_id!(SaleId, "flash sale");

/// A string that is not 24 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id")]
pub struct InvalidId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = SaleId::new();
        assert_eq!(SaleId::parse(&id.hex()).unwrap(), id);
        assert!(SaleId::parse("xyz").is_err());
        assert!(SaleId::parse("zzzzzzzzzzzzzzzzzzzzzzzz").is_err());
    }
}
