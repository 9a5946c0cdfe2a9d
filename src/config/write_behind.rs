//! The `write_behind` section: how orders move from the Redis stream to
//! MongoDB (batch size, poll interval, when a stalled consumer's entries are
//! claimed, how many deliveries an entry MongoDB refuses gets).

use std::time::Duration;

use super::{ConfigError, Reader, Source};

pub const ENV_WRITE_BEHIND_BATCH: &str = "WRITE_BEHIND_BATCH";
pub const DEFAULT_WRITE_BEHIND_BATCH: usize = 500;
pub const ENV_WRITE_BEHIND_INTERVAL_MS: &str = "WRITE_BEHIND_INTERVAL_MS";
pub const DEFAULT_WRITE_BEHIND_INTERVAL_MS: u64 = 50;
pub const ENV_WRITE_BEHIND_CLAIM_IDLE_MS: &str = "WRITE_BEHIND_CLAIM_IDLE_MS";
pub const DEFAULT_WRITE_BEHIND_CLAIM_IDLE_MS: u64 = 30_000;
/// Deliveries after which an entry MongoDB keeps refusing goes to the
/// stream's dead-letter stream.
pub const ENV_WRITE_BEHIND_MAX_DELIVERIES: &str = "WRITE_BEHIND_MAX_DELIVERIES";
pub const DEFAULT_WRITE_BEHIND_MAX_DELIVERIES: u64 = 5;

#[derive(Debug, Clone)]
pub struct WriteBehindConfig {
    pub batch_size: usize,
    pub interval: Duration,
    pub claim_idle: Duration,
    pub max_deliveries: u64,
}

/// Reads `WRITE_BEHIND_BATCH`, `WRITE_BEHIND_INTERVAL_MS`,
/// `WRITE_BEHIND_CLAIM_IDLE_MS` and `WRITE_BEHIND_MAX_DELIVERIES`.
pub(super) fn read(src: &dyn Source) -> Result<WriteBehindConfig, ConfigError> {
    let r = Reader::new(src);
    Ok(WriteBehindConfig {
        batch_size: r.ranged(
            ENV_WRITE_BEHIND_BATCH,
            DEFAULT_WRITE_BEHIND_BATCH,
            1,
            10_000,
        )?,
        interval: r.millis(
            ENV_WRITE_BEHIND_INTERVAL_MS,
            DEFAULT_WRITE_BEHIND_INTERVAL_MS,
        )?,
        claim_idle: r.millis(
            ENV_WRITE_BEHIND_CLAIM_IDLE_MS,
            DEFAULT_WRITE_BEHIND_CLAIM_IDLE_MS,
        )?,
        max_deliveries: r.ranged(
            ENV_WRITE_BEHIND_MAX_DELIVERIES,
            DEFAULT_WRITE_BEHIND_MAX_DELIVERIES,
            1,
            1_000,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{map, refused};
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = read(&map(&[])).unwrap();
        assert_eq!(c.batch_size, DEFAULT_WRITE_BEHIND_BATCH);
        assert_eq!(c.interval, Duration::from_millis(50));
        assert_eq!(c.claim_idle, Duration::from_millis(30_000));
        assert_eq!(c.max_deliveries, 5);
    }

    #[test]
    fn each_bad_write_behind_value_names_its_variable() {
        for (var, bad) in [
            (ENV_WRITE_BEHIND_BATCH, "10001"),
            (ENV_WRITE_BEHIND_INTERVAL_MS, "-5"),
            (ENV_WRITE_BEHIND_CLAIM_IDLE_MS, "forever"),
            (ENV_WRITE_BEHIND_MAX_DELIVERIES, "0"),
        ] {
            assert_eq!(refused(read, &[(var, bad)]), var);
        }
    }
}
