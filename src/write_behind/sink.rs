//! What the drainer writes into: one [`Sink`] per kind of stream (orders,
//! fraud events). A sink names its streams, decodes an entry's fields and
//! writes a batch idempotently; the drainer does everything else.

use std::future::Future;

use fred::prelude::{Client, Value};

use crate::error::StoreError;

/// What happens to an entry its sink cannot decode. Either way it is
/// acknowledged, so it cannot block the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Its id is appended to `<stream>:dead` for someone to look at.
    DeadLetter,
    /// Logged and dropped (the sink's data is best effort).
    Drop,
}

/// A destination for the entries of one kind of stream.
pub trait Sink: Send + Sync + std::fmt::Debug + 'static {
    /// What an entry decodes into.
    type Item: Send + Sync;
    /// What decoding a stream's entries needs beside their fields (the sale
    /// of an order stream).
    type Stream: Send + Sync;

    /// The entries' name in logs ("order", "fraud event").
    const KIND: &'static str;
    /// What happens to entries that do not decode.
    const MALFORMED: Malformed;
    /// Whether the backlog gauges (which speak of orders) count these streams.
    const IN_BACKLOG: bool;

    /// The streams to drain now: their keys, each with its context.
    fn streams(
        &self,
        redis: &Client,
    ) -> impl Future<Output = Result<Vec<(String, Self::Stream)>, fred::error::Error>> + Send;

    /// Decodes one entry's `[field, value, ...]` list; `None` when malformed.
    fn decode(&self, stream: &Self::Stream, id: &str, fields: &[Value]) -> Option<Self::Item>;

    /// Writes a batch so that writing it again is harmless (the stream entry
    /// decides the `_id`); returns how many items were new.
    fn write(&self, items: &[Self::Item])
    -> impl Future<Output = Result<usize, StoreError>> + Send;
}
