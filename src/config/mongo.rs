//! The `mongo` section: the MongoDB connection string, database and pool.

use super::{ConfigError, Reader, Source};

pub const ENV_MONGO_URL: &str = "MONGO_URL";
pub const ENV_MONGO_DB: &str = "MONGO_DB";
pub const DEFAULT_MONGO_DB: &str = "flashsale";
pub const ENV_MONGO_POOL_SIZE: &str = "MONGO_POOL_SIZE";
pub const DEFAULT_MONGO_POOL_SIZE: u32 = 32;

#[derive(Debug, Clone)]
pub struct MongoConfig {
    pub url: String,
    pub database: String,
    pub pool_size: u32,
}

/// Reads `MONGO_URL` (required), `MONGO_DB` and `MONGO_POOL_SIZE`.
pub(super) fn read(src: &dyn Source) -> Result<MongoConfig, ConfigError> {
    let r = Reader::new(src);
    let url = r.required(ENV_MONGO_URL)?;
    if !(url.starts_with("mongodb://") || url.starts_with("mongodb+srv://")) {
        return Err(ConfigError::new(
            ENV_MONGO_URL,
            "must start with mongodb:// or mongodb+srv://",
        ));
    }
    let mongo = MongoConfig {
        url,
        database: r.string_or(ENV_MONGO_DB, DEFAULT_MONGO_DB),
        pool_size: r.ranged(ENV_MONGO_POOL_SIZE, DEFAULT_MONGO_POOL_SIZE, 1, 1_000)?,
    };
    if mongo.database.is_empty() || mongo.database.contains(['/', '.', ' ', '$']) {
        return Err(ConfigError::new(ENV_MONGO_DB, "not a valid database name"));
    }
    Ok(mongo)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{map, refused};
    use super::*;

    const URL: &str = "mongodb://127.0.0.1:27017";

    #[test]
    fn url_is_required_and_defaults_fill_the_rest() {
        assert_eq!(refused(read, &[]), ENV_MONGO_URL);
        let c = read(&map(&[(ENV_MONGO_URL, URL)])).unwrap();
        assert_eq!(c.database, DEFAULT_MONGO_DB);
        assert_eq!(c.pool_size, DEFAULT_MONGO_POOL_SIZE);
    }

    #[test]
    fn each_bad_mongo_value_names_its_variable() {
        assert_eq!(
            refused(read, &[(ENV_MONGO_URL, "postgres://x")]),
            ENV_MONGO_URL
        );
        let bad_db = [(ENV_MONGO_URL, URL), (ENV_MONGO_DB, "a.b")];
        assert_eq!(refused(read, &bad_db), ENV_MONGO_DB);
        let bad_pool = [(ENV_MONGO_URL, URL), (ENV_MONGO_POOL_SIZE, "0")];
        assert_eq!(refused(read, &bad_pool), ENV_MONGO_POOL_SIZE);
    }
}
