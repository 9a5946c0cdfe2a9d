//! This process's wall clock: now in unix milliseconds, and RFC 3339 text for
//! timestamps in API answers. A leaf: it uses no other module.
//!
//! Sale windows are decided by Redis's clock (the scripts call `TIME`), never
//! by this one; it serves views, expiries of in-process entries and metrics.

use mongodb::bson::DateTime;

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    DateTime::now().timestamp_millis()
}

/// RFC 3339 with milliseconds (`2026-11-24T20:10:54.979Z`).
pub fn rfc3339(t: DateTime) -> String {
    t.try_to_rfc3339_string()
        .unwrap_or_else(|_| t.timestamp_millis().to_string())
}

/// [`rfc3339`] of a unix-millisecond timestamp.
pub fn rfc3339_ms(ms: i64) -> String {
    rfc3339(DateTime::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_milliseconds_in_utc() {
        assert_eq!(rfc3339_ms(1_764_015_054_979), "2025-11-24T20:10:54.979Z");
    }
}
