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
                parse_oid(s).map(Self)
            }

            pub fn oid(self) -> ObjectId {
                self.0
            }

            /// The 24 lowercase hex digits.
            pub fn hex(self) -> String {
                hex24(&self.0)
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

/// `oid` as 24 lowercase hex digits. `ObjectId::to_hex` collects an
/// iterator of chars, which cost a purchase about a microsecond over its
/// four ids; this writes the digits straight into the string's buffer.
pub fn hex24(oid: &ObjectId) -> String {
    let mut buf = [0u8; 24];
    // 12 bytes always fill 24 ASCII digits, so neither step can fail; if
    // one did, the slow path gives the same digits.
    match hex::encode_to_slice(oid.bytes(), &mut buf) {
        Ok(()) => std::str::from_utf8(&buf).map_or_else(|_| oid.to_hex(), str::to_owned),
        Err(_) => oid.to_hex(),
    }
}

/// Parses exactly 24 hex digits (either case) into an ObjectId.
pub fn parse_oid(s: &str) -> Result<ObjectId, InvalidId> {
    let mut bytes = [0u8; 12];
    if s.len() != 24 {
        return Err(InvalidId);
    }
    hex::decode_to_slice(s, &mut bytes).map_err(|_| InvalidId)?;
    Ok(ObjectId::from_bytes(bytes))
}

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
        assert!(SaleId::parse("0123456789abcdef0123456").is_err());
        assert!(SaleId::parse("0123456789abcdef012345678").is_err());
        assert!(SaleId::parse("0123456789abcdef0123456é").is_err());
    }

    #[test]
    fn hex_digits_are_the_object_ids_own() {
        for _ in 0..100 {
            let oid = ObjectId::new();
            assert_eq!(hex24(&oid), oid.to_hex());
            assert_eq!(UserId(oid).hex(), oid.to_hex());
            assert_eq!(parse_oid(&oid.to_hex().to_uppercase()).unwrap(), oid);
        }
        let max = ObjectId::from_bytes([0xff; 12]);
        assert_eq!(hex24(&max), "ffffffffffffffffffffffff");
        assert_eq!(parse_oid("FFFFFFFFFFFFFFFFFFFFFFFF").unwrap(), max);
    }
}
