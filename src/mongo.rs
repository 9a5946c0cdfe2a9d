//! MongoDB helpers shared by the stores: the idempotent batch insert the
//! write-behind sinks rely on, index creation, and offset/limit paging.
//!
//! A leaf: it knows only [`StoreError`] and the driver.

use futures_util::TryStreamExt;
use mongodb::bson::Document;
use mongodb::error::ErrorKind;
use mongodb::options::{Acknowledgment, WriteConcern};
use mongodb::{Collection, IndexModel};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;

/// MongoDB's error code for a duplicate key.
const DUPLICATE_KEY: i32 = 11000;

/// What writing a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Items MongoDB did not hold before (a duplicate `_id` counts as
    /// already written, not as new).
    pub new: usize,
    /// Items MongoDB refused for a reason other than a duplicate key (a
    /// validator, a too-large document...), by their index in the batch. The
    /// rest of the batch was written.
    pub rejected: Vec<Rejected>,
}

/// One item of a batch that MongoDB refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Its index in the batch.
    pub index: usize,
    /// MongoDB's error code (121: document failed validation).
    pub code: i32,
    pub message: String,
}

/// Writes a batch idempotently: unordered, acknowledged by a majority and
/// journaled (`w: majority, j: true`, so an acknowledged batch survives a
/// crash and the stream entries can be released), and a duplicate `_id`
/// counts as already written. Items refused for any other reason are
/// returned in [`Written::rejected`]; a failure of the whole batch (MongoDB
/// down, write concern not met) is an error.
pub(crate) async fn insert_idempotent<T>(
    coll: &Collection<T>,
    docs: &[T],
) -> Result<Written, StoreError>
where
    T: Serialize + Send + Sync,
{
    if docs.is_empty() {
        return Ok(Written::default());
    }
    let result = coll
        .insert_many(docs)
        .ordered(false)
        .write_concern(
            WriteConcern::builder()
                .w(Acknowledgment::Majority)
                .journal(true)
                .build(),
        )
        .await;
    match result {
        Ok(r) => Ok(Written {
            new: r.inserted_ids.len(),
            rejected: Vec::new(),
        }),
        Err(e) => {
            if let ErrorKind::InsertMany(im) = &*e.kind
                && im.write_concern_error.is_none()
                && let Some(errors) = &im.write_errors
            {
                let rejected: Vec<Rejected> = errors
                    .iter()
                    .filter(|w| w.code != DUPLICATE_KEY)
                    .map(|w| Rejected {
                        index: w.index,
                        code: w.code,
                        message: w.message.clone(),
                    })
                    .collect();
                return Ok(Written {
                    new: docs.len().saturating_sub(errors.len()),
                    rejected,
                });
            }
            Err(e.into())
        }
    }
}

/// Creates one plain index per key document (a no-op for existing ones).
pub(crate) async fn ensure_indexes<T>(
    coll: &Collection<T>,
    keys: impl IntoIterator<Item = Document>,
) -> Result<(), StoreError>
where
    T: Send + Sync,
{
    for k in keys {
        coll.create_index(IndexModel::builder().keys(k).build())
            .await?;
    }
    Ok(())
}

/// One page of `filter` in `sort` order: skips `offset`, returns at most `limit`.
pub(crate) async fn find_page<T>(
    coll: &Collection<T>,
    filter: Document,
    sort: Document,
    offset: u64,
    limit: i64,
) -> Result<Vec<T>, StoreError>
where
    T: DeserializeOwned + Send + Sync,
{
    let cursor = coll
        .find(filter)
        .sort(sort)
        .skip(offset)
        .limit(limit)
        .await?;
    Ok(cursor.try_collect().await?)
}
