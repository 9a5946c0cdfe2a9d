//! What the drainer writes into: one [`Sink`] per kind of stream (orders,
//! fraud events). A sink names its streams, decodes an entry's fields,
//! writes a batch idempotently and says when a stream is finished; the
//! drainer does everything else.

use std::future::Future;

use fred::prelude::{Client, Value};

use crate::error::StoreError;
pub use crate::mongo::{Rejected, Written};

/// What happens to an entry its sink cannot decode. Either way it is
/// acknowledged, so it cannot block the stream. (An entry that decodes but
/// MongoDB keeps refusing goes to the dead-letter stream whatever this says:
/// see `WRITE_BEHIND_MAX_DELIVERIES`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// It is appended, with its id and fields, to `<stream>:dead` for
    /// someone to look at.
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
    /// decides the `_id`); returns how many items were new and which ones
    /// MongoDB refused (the rest of the batch is written).
    fn write(
        &self,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Written, StoreError>> + Send;

    /// True when no entry can ever be added to this stream again (an order
    /// stream of a sale that ended). The drainer then forgets a stream it
    /// has fully drained (see [`Sink::retire`]). Default: never.
    fn finished(
        &self,
        _redis: &Client,
        _stream: &Self::Stream,
    ) -> impl Future<Output = Result<bool, fred::error::Error>> + Send {
        async { Ok(false) }
    }

    /// Stops listing a finished, fully drained stream in [`Sink::streams`].
    fn retire(
        &self,
        _redis: &Client,
        _stream: &Self::Stream,
    ) -> impl Future<Output = Result<(), fred::error::Error>> + Send {
        async { Ok(()) }
    }
}
