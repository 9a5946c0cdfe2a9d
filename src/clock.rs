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
/// Always three fraction digits, so the texts of two times sort as the
/// times do (the RFC 3339 formatter underneath drops trailing zeros: `.9Z`
/// sorted after `.95Z`).
pub fn rfc3339(t: DateTime) -> String {
    let Ok(s) = t.try_to_rfc3339_string() else {
        return t.timestamp_millis().to_string();
    };
    let Some(base) = s.strip_suffix('Z') else {
        return s;
    };
    let secs = base.split_once('.').map_or(base, |(secs, _)| secs);
    format!("{secs}.{:03}Z", t.timestamp_millis().rem_euclid(1000))
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

    #[test]
    fn always_three_fraction_digits_so_texts_sort_as_times() {
        assert_eq!(rfc3339_ms(1_764_015_054_900), "2025-11-24T20:10:54.900Z");
        assert_eq!(rfc3339_ms(1_764_015_054_000), "2025-11-24T20:10:54.000Z");
        assert_eq!(rfc3339_ms(1_764_015_054_050), "2025-11-24T20:10:54.050Z");
        assert!(rfc3339_ms(1_764_015_054_900) < rfc3339_ms(1_764_015_054_950));
        assert!(
            rfc3339_ms(-1_500).ends_with(".500Z"),
            "{}",
            rfc3339_ms(-1_500)
        );
    }
}
