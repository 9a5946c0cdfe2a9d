//! A Lua script compiled in with `include_str!` and called by SHA. Each
//! module owns the scripts of its concern (`engine::PURCHASE`, ...).
//! A `NOSCRIPT` reply (Redis restarted or failed over) loads the script on
//! every primary and retries once.

use fred::prelude::*;
use fred::types::{MultipleKeys, MultipleValues};
use fred::util::sha1_hash;

/// A Lua script with its SHA1.
#[derive(Debug)]
pub struct Script {
    pub name: &'static str,
    pub lua: &'static str,
    pub sha: String,
}

impl Script {
    pub fn new(name: &'static str, lua: &'static str) -> Self {
        Self {
            name,
            lua,
            sha: sha1_hash(lua),
        }
    }

    /// Loads the script on every primary.
    pub async fn load(&self, client: &Client) -> Result<(), Error> {
        client.script_load_cluster::<(), _>(self.lua).await
    }

    /// EVALSHA on the pool's next client, loading the script and retrying
    /// once on NOSCRIPT.
    pub async fn call<R: FromValue>(
        &self,
        pool: &Pool,
        keys: impl Into<MultipleKeys> + Send,
        args: impl TryInto<MultipleValues, Error: Into<Error> + Send> + Send,
    ) -> Result<R, Error> {
        self.call_on(pool.next(), keys, args).await
    }

    /// [`call`](Self::call) on one given client (a write that is to be
    /// confirmed with WAIT must run on the connection that confirms it).
    pub async fn call_on<R: FromValue>(
        &self,
        client: &Client,
        keys: impl Into<MultipleKeys> + Send,
        args: impl TryInto<MultipleValues, Error: Into<Error> + Send> + Send,
    ) -> Result<R, Error> {
        let keys: MultipleKeys = keys.into();
        let args: MultipleValues = args.try_into().map_err(Into::into)?;
        match client
            .evalsha::<R, _, _, _>(self.sha.as_str(), keys.clone(), args.clone())
            .await
        {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                tracing::info!(script = self.name, "script not cached by Redis, loading it");
                self.load(client).await?;
                client.evalsha(self.sha.as_str(), keys, args).await
            }
            other => other,
        }
    }
}

/// Loads scripts on every primary so the first calls need no round trip to load.
pub async fn load_all(client: &Client, scripts: &[&Script]) -> Result<(), Error> {
    for s in scripts {
        s.load(client).await?;
    }
    Ok(())
}
