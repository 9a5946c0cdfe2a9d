//! Real time: the WebSocket sockets, the per-sale hub, and the sources that
//! feed it (stock read from Redis each tick for the watched sales, pub/sub for lifecycle
//! events published by the scheduler on any instance).

mod hub;
mod messages;
mod source;
mod ws;

pub use hub::{Caps, Hub, HubStats, Membership, Refused, Slot, StockFrame};
pub use messages::{ClientMessage, SaleRef, ServerMessage};
pub use source::{EVENTS_CHANNEL, LifecycleEvent, LifecycleKind, Source, publish_lifecycle};
pub use ws::{RealtimeConfig, Sockets};
