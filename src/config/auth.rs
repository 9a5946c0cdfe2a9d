//! The `auth` section: the JWT signing key and claims, password hashing, and
//! the admin account created at start-up (`ADMIN_*`).

use std::time::Duration;

use super::{ConfigError, Reader, Secret, Source};

pub const ENV_SECRET_KEY: &str = "SECRET_KEY";
pub const MIN_SECRET_KEY_BYTES: usize = 32;
pub const ENV_JWT_ISSUER: &str = "JWT_ISSUER";
pub const DEFAULT_JWT_ISSUER: &str = "flashsale";
pub const ENV_JWT_TTL_SECONDS: &str = "JWT_TTL_SECONDS";
pub const DEFAULT_JWT_TTL_SECONDS: u64 = 3_600;

pub const ENV_ADMIN_EMAIL: &str = "ADMIN_EMAIL";
pub const ENV_ADMIN_PASSWORD: &str = "ADMIN_PASSWORD";
pub const ENV_ADMIN_NAME: &str = "ADMIN_NAME";
pub const DEFAULT_ADMIN_NAME: &str = "Administrator";

pub const ENV_PASSWORD_ITERATIONS: &str = "PASSWORD_ITERATIONS";
pub const DEFAULT_PASSWORD_ITERATIONS: u32 = 600_000;
/// Lowest iteration count start-up accepts.
pub const MIN_PASSWORD_ITERATIONS: u32 = 100_000;
/// Test-only: `1` lets `PASSWORD_ITERATIONS` go down to
/// [`MIN_INSECURE_PASSWORD_ITERATIONS`], so test suites sign in fast.
pub const ENV_PASSWORD_ITERATIONS_INSECURE: &str = "PASSWORD_ITERATIONS_INSECURE";
pub const MIN_INSECURE_PASSWORD_ITERATIONS: u32 = 1_000;
pub const ENV_HASH_CONCURRENCY: &str = "HASH_CONCURRENCY";
pub const DEFAULT_HASH_CONCURRENCY: usize = 2;
/// Sign-ins and sign-ups allowed to wait for a hash; more get 503 at once.
pub const ENV_HASH_QUEUE: &str = "HASH_QUEUE";
pub const DEFAULT_HASH_QUEUE: usize = 64;
/// The longest one waits for a hash before it gets 503.
pub const ENV_HASH_QUEUE_TIMEOUT_MS: &str = "HASH_QUEUE_TIMEOUT_MS";
pub const DEFAULT_HASH_QUEUE_TIMEOUT_MS: u64 = 2_000;
/// Dummy hashes (sign-ins for unknown emails) started per second; past it
/// such sign-ins get 503 at once. Bounds the CPU a flood of made-up emails
/// can take.
pub const ENV_HASH_UNKNOWN_PER_SECOND: &str = "HASH_UNKNOWN_PER_SECOND";
pub const DEFAULT_HASH_UNKNOWN_PER_SECOND: u32 = 2;
/// The share of one core, in percent, dummy hashes may take on average (0:
/// no budget): with the derivation time measured at start-up, one dummy
/// hash per `derivation * 100 / percent`, after a burst of a few. Bounds the
/// CPU a flood of made-up emails takes whatever `PASSWORD_ITERATIONS` is.
pub const ENV_HASH_UNKNOWN_CPU_PERCENT: &str = "HASH_UNKNOWN_CPU_PERCENT";
pub const DEFAULT_HASH_UNKNOWN_CPU_PERCENT: u32 = 5;
/// The nice value of the threads that derive password hashes (0-19): they
/// get the CPU the request path leaves, so a sign-in flood's hashes cannot
/// slow purchases down on a busy host.
pub const ENV_HASH_NICE: &str = "HASH_NICE";
pub const DEFAULT_HASH_NICE: i32 = 10;

/// How much hashing one instance does at once, and how much it lets wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashLimits {
    /// Derivations running at once (each on a hashing thread of its own).
    pub concurrency: usize,
    /// Requests allowed to wait for a derivation; more are refused at once.
    pub queue: usize,
    /// The longest a request waits for a derivation before it is refused.
    pub wait: Duration,
    /// Dummy-hash derivations started per second (0: no rate, only the
    /// lane's share of `concurrency`).
    pub unknown_per_second: u32,
    /// The share of one core (percent) dummy hashes may take on average
    /// (0: no budget).
    pub unknown_cpu_percent: u32,
    /// The hashing threads' nice value, absolute (0: no change; one below
    /// the process's own is refused by the kernel and logged).
    pub nice: i32,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub secret_key: Secret,
    pub issuer: String,
    pub token_ttl: Duration,
    pub password_iterations: u32,
    pub hash_limits: HashLimits,
    pub admin_email: Option<String>,
    pub admin_password: Option<Secret>,
    pub admin_name: String,
}

/// Reads `SECRET_KEY` (required), `JWT_ISSUER`, `JWT_TTL_SECONDS`,
/// `PASSWORD_ITERATIONS` (and the test-only `PASSWORD_ITERATIONS_INSECURE`),
/// `HASH_CONCURRENCY`, `HASH_QUEUE`, `HASH_QUEUE_TIMEOUT_MS`,
/// `HASH_UNKNOWN_PER_SECOND`, `HASH_UNKNOWN_CPU_PERCENT`, `HASH_NICE` and
/// `ADMIN_EMAIL` / `ADMIN_PASSWORD` (both or neither) / `ADMIN_NAME`.
pub(super) fn read(src: &dyn Source) -> Result<AuthConfig, ConfigError> {
    let r = Reader::new(src);
    let secret_key = r.required(ENV_SECRET_KEY)?;
    if secret_key.len() < MIN_SECRET_KEY_BYTES {
        return Err(ConfigError::new(
            ENV_SECRET_KEY,
            format!("must be at least {MIN_SECRET_KEY_BYTES} bytes"),
        ));
    }
    let admin_email = r.optional(ENV_ADMIN_EMAIL);
    let admin_password = r.optional(ENV_ADMIN_PASSWORD).map(Secret::new);
    match (&admin_email, &admin_password) {
        (Some(_), None) => {
            return Err(ConfigError::new(
                ENV_ADMIN_PASSWORD,
                "must be set when ADMIN_EMAIL is set",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                ENV_ADMIN_EMAIL,
                "must be set when ADMIN_PASSWORD is set",
            ));
        }
        _ => {}
    }
    Ok(AuthConfig {
        secret_key: Secret::new(secret_key),
        issuer: r.string_or(ENV_JWT_ISSUER, DEFAULT_JWT_ISSUER),
        token_ttl: Duration::from_secs(r.ranged(
            ENV_JWT_TTL_SECONDS,
            DEFAULT_JWT_TTL_SECONDS,
            60,
            7 * 24 * 3_600,
        )?),
        password_iterations: read_password_iterations(&r)?,
        hash_limits: HashLimits {
            concurrency: r.ranged(ENV_HASH_CONCURRENCY, DEFAULT_HASH_CONCURRENCY, 1, 256)?,
            queue: r.ranged(ENV_HASH_QUEUE, DEFAULT_HASH_QUEUE, 1, 100_000)?,
            wait: r.millis(ENV_HASH_QUEUE_TIMEOUT_MS, DEFAULT_HASH_QUEUE_TIMEOUT_MS)?,
            unknown_per_second: r.ranged(
                ENV_HASH_UNKNOWN_PER_SECOND,
                DEFAULT_HASH_UNKNOWN_PER_SECOND,
                0,
                100_000,
            )?,
            unknown_cpu_percent: r.ranged(
                ENV_HASH_UNKNOWN_CPU_PERCENT,
                DEFAULT_HASH_UNKNOWN_CPU_PERCENT,
                0,
                100,
            )?,
            nice: r.ranged(ENV_HASH_NICE, DEFAULT_HASH_NICE, 0, 19)?,
        },
        admin_email,
        admin_password,
        admin_name: r.string_or(ENV_ADMIN_NAME, DEFAULT_ADMIN_NAME),
    })
}

/// `PASSWORD_ITERATIONS`, at least [`MIN_PASSWORD_ITERATIONS`] unless
/// `PASSWORD_ITERATIONS_INSECURE=1` says this is a test.
fn read_password_iterations(r: &Reader<'_>) -> Result<u32, ConfigError> {
    let insecure = match r.optional(ENV_PASSWORD_ITERATIONS_INSECURE).as_deref() {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(_) => {
            return Err(ConfigError::new(
                ENV_PASSWORD_ITERATIONS_INSECURE,
                "must be 1 (tests only) or 0",
            ));
        }
    };
    let min = if insecure {
        MIN_INSECURE_PASSWORD_ITERATIONS
    } else {
        MIN_PASSWORD_ITERATIONS
    };
    let n = r.ranged(
        ENV_PASSWORD_ITERATIONS,
        DEFAULT_PASSWORD_ITERATIONS,
        MIN_INSECURE_PASSWORD_ITERATIONS,
        10_000_000,
    )?;
    if n < min {
        return Err(ConfigError::new(
            ENV_PASSWORD_ITERATIONS,
            format!(
                "{n} is below {min}, too cheap to guess against \
                 (tests may set {ENV_PASSWORD_ITERATIONS_INSECURE}=1)"
            ),
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{map, refused};
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    /// `SECRET_KEY` set to a valid key, then `pairs`.
    fn with_key(pairs: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v = vec![(ENV_SECRET_KEY, KEY)];
        v.extend_from_slice(pairs);
        v
    }

    #[test]
    fn defaults_apply_when_only_the_key_is_set() {
        let c = read(&map(&with_key(&[]))).unwrap();
        assert_eq!(c.secret_key.expose(), KEY);
        assert_eq!(c.issuer, DEFAULT_JWT_ISSUER);
        assert_eq!(c.token_ttl, Duration::from_secs(DEFAULT_JWT_TTL_SECONDS));
        assert_eq!(c.password_iterations, DEFAULT_PASSWORD_ITERATIONS);
        assert_eq!(c.admin_email, None);
        assert_eq!(c.admin_name, DEFAULT_ADMIN_NAME);
    }

    #[test]
    fn missing_secret_key_names_the_variable() {
        let e = read(&map(&[])).expect_err("config should be rejected");
        assert_eq!(e.var, ENV_SECRET_KEY);
        assert!(e.to_string().contains("SECRET_KEY"));
    }

    #[test]
    fn short_secret_key_is_refused() {
        assert_eq!(
            refused(read, &[(ENV_SECRET_KEY, &KEY[1..])]),
            ENV_SECRET_KEY
        );
    }

    #[test]
    fn hash_nice_outside_0_to_19_is_refused_naming_the_variable() {
        for bad in ["-1", "20", "x"] {
            assert_eq!(
                refused(read, &with_key(&[(ENV_HASH_NICE, bad)])),
                ENV_HASH_NICE,
                "{bad}"
            );
        }
        let c = read(&map(&with_key(&[(ENV_HASH_NICE, "0")]))).unwrap();
        assert_eq!(c.hash_limits.nice, 0);
        let c = read(&map(&with_key(&[]))).unwrap();
        assert_eq!(c.hash_limits.nice, DEFAULT_HASH_NICE);
    }

    #[test]
    fn the_dummy_hash_cpu_budget_is_a_percentage_of_one_core() {
        for bad in ["-1", "101", "5%", "x"] {
            assert_eq!(
                refused(read, &with_key(&[(ENV_HASH_UNKNOWN_CPU_PERCENT, bad)])),
                ENV_HASH_UNKNOWN_CPU_PERCENT,
                "{bad}"
            );
        }
        let c = read(&map(&with_key(&[(ENV_HASH_UNKNOWN_CPU_PERCENT, "0")]))).unwrap();
        assert_eq!(c.hash_limits.unknown_cpu_percent, 0);
        let c = read(&map(&with_key(&[]))).unwrap();
        assert_eq!(
            c.hash_limits.unknown_cpu_percent,
            DEFAULT_HASH_UNKNOWN_CPU_PERCENT
        );
    }

    #[test]
    fn admin_email_without_password_is_refused() {
        let m = with_key(&[(ENV_ADMIN_EMAIL, "a@b.c")]);
        assert_eq!(refused(read, &m), ENV_ADMIN_PASSWORD);
        let m = with_key(&[(ENV_ADMIN_PASSWORD, "pw")]);
        assert_eq!(refused(read, &m), ENV_ADMIN_EMAIL);
    }

    #[test]
    fn low_password_iterations_are_refused() {
        let m = with_key(&[(ENV_PASSWORD_ITERATIONS, "10")]);
        assert_eq!(refused(read, &m), ENV_PASSWORD_ITERATIONS);
        let m = with_key(&[(ENV_PASSWORD_ITERATIONS, "99999")]);
        let e = read(&map(&m)).expect_err("below 100,000");
        assert_eq!(e.var, ENV_PASSWORD_ITERATIONS);
        assert!(
            e.to_string().contains("PASSWORD_ITERATIONS_INSECURE"),
            "{e}"
        );
        let m = with_key(&[(ENV_PASSWORD_ITERATIONS, "100000")]);
        assert_eq!(read(&map(&m)).unwrap().password_iterations, 100_000);
    }

    #[test]
    fn the_test_only_flag_allows_cheap_hashing_and_nothing_cheaper() {
        let cheap = |n| {
            with_key(&[
                (ENV_PASSWORD_ITERATIONS, n),
                (ENV_PASSWORD_ITERATIONS_INSECURE, "1"),
            ])
        };
        assert_eq!(
            read(&map(&cheap("1000"))).unwrap().password_iterations,
            1_000
        );
        assert_eq!(refused(read, &cheap("999")), ENV_PASSWORD_ITERATIONS);
        let m = with_key(&[
            (ENV_PASSWORD_ITERATIONS, "1000"),
            (ENV_PASSWORD_ITERATIONS_INSECURE, "yes"),
        ]);
        assert_eq!(refused(read, &m), ENV_PASSWORD_ITERATIONS_INSECURE);
        let m = with_key(&[
            (ENV_PASSWORD_ITERATIONS, "1000"),
            (ENV_PASSWORD_ITERATIONS_INSECURE, "0"),
        ]);
        assert_eq!(refused(read, &m), ENV_PASSWORD_ITERATIONS);
    }

    #[test]
    fn each_bad_auth_value_names_its_variable() {
        for (var, bad) in [(ENV_JWT_TTL_SECONDS, "59"), (ENV_HASH_CONCURRENCY, "0")] {
            assert_eq!(refused(read, &with_key(&[(var, bad)])), var);
        }
    }
}
