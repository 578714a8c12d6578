//! The seams between service logic and infrastructure. Each port has production adapters
//! (crate `adapters`) and simulation adapters (crate `sim`), checked by one conformance suite.

pub mod event_log;
pub mod hints;
pub mod store;

pub use event_log::{
    Acks, ConsumedRecord, Consumer, ConsumerConfig, EventLog, EventLogError, LagQuery,
    PartitionLag, ProducedRecord, Producer, ProducerConfig, RecordAck, MAX_POLL_INTERVAL_DEFAULT,
};
pub use hints::{HintStream, Hints, HintsError, LocalHints};
pub use store::{
    liveness_lease, Claimed, Cleaned, ExpectClaim, InboxMark, OutboxMessage, OutboxRow, Platform,
    Schema, Store, StoreError, Tx, Versioned, WorkMark,
};
