//! The `users` collection: accounts with normalised, unique emails.

use mongodb::bson::{DateTime, doc, oid::ObjectId};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use super::Role;
use crate::error::{ErrorCode, StoreError};
use crate::ids::UserId;

pub(super) const COLLECTION: &str = "users";

/// A stored account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub name: String,
    pub email: String,
    #[serde(rename = "passwordHash")]
    pub password_hash: String,
    pub role: Role,
    #[serde(rename = "createdAt")]
    pub created_at: DateTime,
    /// Raised with every role change: tokens issued below it are revoked
    /// (`auth::TokenEpochs`). Absent (0) on accounts never changed.
    #[serde(rename = "tokenEpoch", default)]
    pub token_epoch: i64,
}

impl User {
    /// The epoch new tokens of this account carry.
    pub fn epoch(&self) -> u64 {
        u64::try_from(self.token_epoch).unwrap_or(0)
    }

    pub fn user_id(&self) -> UserId {
        UserId(self.id)
    }
}

/// A validated sign-up.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    pub password: String,
    pub role: Role,
}

impl NewUser {
    /// Validates the sign-up fields; returns (field, reason) for the first bad one.
    pub fn parse(
        name: &str,
        email: &str,
        password: &str,
        role: Role,
    ) -> Result<Self, (&'static str, &'static str)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(("name", "must be 1 to 100 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(("name", "must not contain control characters"));
        }
        let email = normalize_email(email).ok_or(("email", "is not a valid email address"))?;
        let len = password.chars().count();
        if len < 8 {
            return Err(("password", "must be at least 8 characters"));
        }
        if len > 128 {
            return Err(("password", "must be at most 128 characters"));
        }
        Ok(Self {
            name: name.to_owned(),
            email,
            password: password.to_owned(),
            role,
        })
    }
}

/// Trims and lower-cases an email and checks its basic shape.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (local, domain) = email.split_once('@')?;
    if local.is_empty()
        || local.len() > 64
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return None;
    }
    Some(email)
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl UserError {
    /// The stable error code the client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::EmailTaken => ErrorCode::EmailAlreadyExists,
            Self::Store(_) => ErrorCode::Internal,
        }
    }
}

/// Reads and writes accounts.
#[derive(Debug, Clone)]
pub struct UserStore {
    coll: Collection<User>,
}

impl UserStore {
    pub fn new(db: &Database) -> Self {
        Self {
            coll: db.collection(COLLECTION),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let idx = IndexModel::builder()
            .keys(doc! { "email": 1 })
            .options(IndexOptions::builder().unique(true).build())
            .build();
        self.coll.create_index(idx).await?;
        Ok(())
    }

    pub async fn insert(&self, new: &NewUser, password_hash: String) -> Result<User, UserError> {
        let user = User {
            id: ObjectId::new(),
            name: new.name.clone(),
            email: new.email.clone(),
            password_hash,
            role: new.role,
            created_at: DateTime::now(),
            token_epoch: 0,
        };
        match self.coll.insert_one(&user).await {
            Ok(_) => Ok(user),
            Err(e) if is_duplicate_key(&e) => Err(UserError::EmailTaken),
            Err(e) => Err(UserError::Store(e.into())),
        }
    }

    pub async fn by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        Ok(self.coll.find_one(doc! { "email": email }).await?)
    }

    pub async fn by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        Ok(self.coll.find_one(doc! { "_id": id.oid() }).await?)
    }

    /// Name and email of many users in one query (for the leaderboard cache).
    pub async fn profiles(
        &self,
        ids: &[ObjectId],
    ) -> Result<Vec<(ObjectId, String, String)>, StoreError> {
        use futures_util::TryStreamExt;
        let cursor = self
            .coll
            .clone_with_type::<mongodb::bson::Document>()
            .find(doc! { "_id": { "$in": ids } })
            .projection(doc! { "name": 1, "email": 1 })
            .await?;
        let docs: Vec<mongodb::bson::Document> = cursor.try_collect().await?;
        Ok(docs
            .into_iter()
            .filter_map(|d| {
                Some((
                    d.get_object_id("_id").ok()?,
                    d.get_str("name").ok()?.to_owned(),
                    d.get_str("email").ok()?.to_owned(),
                ))
            })
            .collect())
    }

    /// Replaces an account's password hash with `new`, only while it is still
    /// `old` (a password changed meanwhile is left alone). True if replaced.
    pub async fn replace_hash(&self, id: UserId, old: &str, new: &str) -> Result<bool, StoreError> {
        let r = self
            .coll
            .update_one(
                doc! { "_id": id.oid(), "passwordHash": old },
                doc! { "$set": { "passwordHash": new } },
            )
            .await?;
        Ok(r.modified_count == 1)
    }

    /// Makes the account with `email` an admin with this password hash,
    /// raising its token epoch; the account as it now is, if there is one.
    pub async fn promote(
        &self,
        email: &str,
        password_hash: &str,
    ) -> Result<Option<User>, StoreError> {
        Ok(self
            .coll
            .find_one_and_update(
                doc! { "email": email },
                doc! {
                    "$set": { "role": "admin", "passwordHash": password_hash },
                    "$inc": { "tokenEpoch": 1_i64 },
                },
            )
            .return_document(mongodb::options::ReturnDocument::After)
            .await?)
    }

    /// Sets an account's role and raises its token epoch in one update (so
    /// a token's role and epoch always come from the same version of the
    /// account); the account as it now is, or None when there is none.
    pub async fn set_role(&self, id: UserId, role: Role) -> Result<Option<User>, StoreError> {
        Ok(self
            .coll
            .find_one_and_update(
                doc! { "_id": id.oid() },
                doc! {
                    "$set": { "role": role.as_str() },
                    "$inc": { "tokenEpoch": 1_i64 },
                },
            )
            .return_document(mongodb::options::ReturnDocument::After)
            .await?)
    }
}

/// True for a MongoDB duplicate-key (E11000) error.
pub(super) fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::InsertMany(im) => im
            .write_errors
            .as_ref()
            .is_some_and(|es| !es.is_empty() && es.iter().all(|w| w.code == 11000)),
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            normalize_email("  Bob@Example.COM ").as_deref(),
            Some("bob@example.com")
        );
        for bad in [
            "", "bob", "@x.y", "bob@", "bob@x", "a b@x.y", "bob@x..y", "a@b@c.d",
        ] {
            assert!(normalize_email(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn sign_up_fields_are_checked() {
        assert!(NewUser::parse("Bob", "b@x.io", "longenough", Role::Customer).is_ok());
        assert_eq!(
            NewUser::parse(" ", "b@x.io", "longenough", Role::Customer)
                .unwrap_err()
                .0,
            "name"
        );
        assert_eq!(
            NewUser::parse("Bob", "b@x.io", "short", Role::Customer)
                .unwrap_err()
                .0,
            "password"
        );
        assert_eq!(
            NewUser::parse("Bob", "nope", "longenough", Role::Customer)
                .unwrap_err()
                .0,
            "email"
        );
    }
}
