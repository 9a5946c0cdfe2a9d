//! The `scheduler` section: how often sale statuses are checked, and how long
//! the leader's lease lasts (it must outlive a tick).

use std::time::Duration;

use super::{ConfigError, Reader, Source};

pub const ENV_SCHEDULER_TICK_MS: &str = "SCHEDULER_TICK_MS";
pub const DEFAULT_SCHEDULER_TICK_MS: u64 = 250;
pub const ENV_SCHEDULER_LEASE_MS: &str = "SCHEDULER_LEASE_MS";
pub const DEFAULT_SCHEDULER_LEASE_MS: u64 = 5_000;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub tick: Duration,
    pub lease: Duration,
}

/// Reads `SCHEDULER_TICK_MS` and `SCHEDULER_LEASE_MS` (longer than the tick).
pub(super) fn read(src: &dyn Source) -> Result<SchedulerConfig, ConfigError> {
    let r = Reader::new(src);
    let scheduler = SchedulerConfig {
        tick: r.positive_millis(ENV_SCHEDULER_TICK_MS, DEFAULT_SCHEDULER_TICK_MS)?,
        lease: r.positive_millis(ENV_SCHEDULER_LEASE_MS, DEFAULT_SCHEDULER_LEASE_MS)?,
    };
    if scheduler.lease <= scheduler.tick {
        return Err(ConfigError::new(
            ENV_SCHEDULER_LEASE_MS,
            "must be longer than SCHEDULER_TICK_MS",
        ));
    }
    Ok(scheduler)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{map, refused};
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = read(&map(&[])).unwrap();
        assert_eq!(c.tick, Duration::from_millis(250));
        assert_eq!(c.lease, Duration::from_millis(5_000));
    }

    #[test]
    fn lease_no_longer_than_the_tick_is_refused() {
        let m = [
            (ENV_SCHEDULER_TICK_MS, "500"),
            (ENV_SCHEDULER_LEASE_MS, "500"),
        ];
        assert_eq!(refused(read, &m), ENV_SCHEDULER_LEASE_MS);
        assert_eq!(
            refused(read, &[(ENV_SCHEDULER_TICK_MS, "0")]),
            ENV_SCHEDULER_TICK_MS
        );
    }
}
