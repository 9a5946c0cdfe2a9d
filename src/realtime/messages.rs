//! The WebSocket protocol: `{"event": NAME, "data": {...}}` both ways.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// Messages a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", content = "data", deny_unknown_fields)]
pub enum ClientMessage {
    #[serde(rename = "joinFlashSale")]
    Join(SaleRef),
    #[serde(rename = "leaveFlashSale")]
    Leave(SaleRef),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SaleRef {
    pub flash_sale_id: String,
}

/// Messages the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
pub enum ServerMessage {
    #[serde(rename = "flashSaleStatus", rename_all = "camelCase")]
    Status {
        flash_sale_id: String,
        status: String,
        available_units: i64,
        start_time: String,
        end_time: String,
    },
    #[serde(rename = "stockUpdate", rename_all = "camelCase")]
    StockUpdate {
        flash_sale_id: String,
        available_units: i64,
    },
    #[serde(rename = "flashSaleStarted", rename_all = "camelCase")]
    Started { flash_sale_id: String },
    #[serde(rename = "flashSaleEnded", rename_all = "camelCase")]
    Ended {
        flash_sale_id: String,
        reason: String,
    },
    #[serde(rename = "error")]
    Error { message: String, code: String },
}

impl ServerMessage {
    /// An `error` event with a code from the one table (`crate::error`).
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            message: message.into(),
            code: code.as_str().to_owned(),
        }
    }

    /// The JSON text of this message.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"event":"error","data":{"message":"internal error","code":"INTERNAL"}}"#.to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_messages_parse_strictly() {
        let m: ClientMessage =
            serde_json::from_value(json!({"event":"joinFlashSale","data":{"flashSaleId":"x"}}))
                .unwrap();
        assert_eq!(
            m,
            ClientMessage::Join(SaleRef {
                flash_sale_id: "x".into()
            })
        );
        assert!(
            serde_json::from_value::<ClientMessage>(json!({"event":"nope","data":{}})).is_err()
        );
        assert!(
            serde_json::from_value::<ClientMessage>(
                json!({"event":"joinFlashSale","data":{"flashSaleId":"x","y":1}})
            )
            .is_err()
        );
    }

    #[test]
    fn server_messages_have_the_documented_shape() {
        let m = ServerMessage::StockUpdate {
            flash_sale_id: "s".into(),
            available_units: 3,
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"event":"stockUpdate","data":{"flashSaleId":"s","availableUnits":3}})
        );
        let e = ServerMessage::Ended {
            flash_sale_id: "s".into(),
            reason: "sold-out".into(),
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"event":"flashSaleEnded","data":{"flashSaleId":"s","reason":"sold-out"}})
        );
        let err = ServerMessage::error(ErrorCode::BadMessage, "nope");
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"event":"error","data":{"message":"nope","code":"BAD_MESSAGE"}})
        );
    }
}
