//! The Lua scripts, compiled in with `include_str!` and called by SHA.
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
    fn new(name: &'static str, lua: &'static str) -> Self {
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

    /// EVALSHA, loading the script and retrying once on NOSCRIPT.
    pub async fn call<R: FromValue>(
        &self,
        pool: &Pool,
        keys: impl Into<MultipleKeys> + Send,
        args: impl TryInto<MultipleValues, Error: Into<Error> + Send> + Send,
    ) -> Result<R, Error> {
        let keys: MultipleKeys = keys.into();
        let args: MultipleValues = args.try_into().map_err(Into::into)?;
        let client = pool.next();
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

/// All scripts of the service.
#[derive(Debug)]
pub struct Scripts {
    pub purchase: Script,
    pub seed_sale: Script,
    pub cancel_sale: Script,
    pub unlock: Script,
    pub lease_acquire: Script,
    pub lease_renew: Script,
    pub leaderboard: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            purchase: Script::new("purchase", include_str!("../../lua/purchase.lua")),
            seed_sale: Script::new("seed_sale", include_str!("../../lua/seed_sale.lua")),
            cancel_sale: Script::new("cancel_sale", include_str!("../../lua/cancel_sale.lua")),
            unlock: Script::new("unlock", include_str!("../../lua/unlock.lua")),
            lease_acquire: Script::new(
                "lease_acquire",
                include_str!("../../lua/lease_acquire.lua"),
            ),
            lease_renew: Script::new("lease_renew", include_str!("../../lua/lease_renew.lua")),
            leaderboard: Script::new("leaderboard", include_str!("../../lua/leaderboard.lua")),
        }
    }

    /// Loads every script so the first calls need no round trip to load.
    pub async fn load_all(&self, client: &Client) -> Result<(), Error> {
        for s in [
            &self.purchase,
            &self.seed_sale,
            &self.cancel_sale,
            &self.unlock,
            &self.lease_acquire,
            &self.lease_renew,
            &self.leaderboard,
        ] {
            s.load(client).await?;
        }
        Ok(())
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
