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

/// Writes a batch idempotently: unordered, acknowledged by a majority and
/// journaled (`w: majority, j: true`, so an acknowledged batch survives a
/// crash and the stream entries can be released), and a duplicate `_id`
/// counts as already written. Returns how many were new.
pub(crate) async fn insert_idempotent<T>(
    coll: &Collection<T>,
    docs: &[T],
) -> Result<usize, StoreError>
where
    T: Serialize + Send + Sync,
{
    if docs.is_empty() {
        return Ok(0);
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
        Ok(r) => Ok(r.inserted_ids.len()),
        Err(e) => {
            if let ErrorKind::InsertMany(im) = &*e.kind {
                let only_duplicates = im.write_concern_error.is_none()
                    && im
                        .write_errors
                        .as_ref()
                        .is_some_and(|es| es.iter().all(|w| w.code == DUPLICATE_KEY));
                if only_duplicates {
                    let dups = im.write_errors.as_ref().map_or(0, Vec::len);
                    return Ok(docs.len().saturating_sub(dups));
                }
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
