//! What a service is given to run: its ports and shared settings.

use std::sync::Arc;

use crate::{
    mutants::Mutants,
    ports::{EventLog, ProducerConfig, Schema, Store},
};

/// The infrastructure one service instance with store schema `S` runs on.
pub struct Infra<S: Schema> {
    /// This instance's name, unique among the service's instances: the owner of its claims
    /// and leases in the store (e.g. `order-2`).
    pub instance: String,
    /// The service's own database.
    pub store: Arc<dyn Store<S>>,
    /// The Kafka cluster.
    pub events: Arc<dyn EventLog>,
    /// Producer settings for the outbox relay and any producer the service makes.
    pub producer: ProducerConfig,
    /// Deliberate faults for the simulation's checkers; default in production.
    pub mutants: Mutants,
}

impl<S: Schema> Clone for Infra<S> {
    fn clone(&self) -> Self {
        Infra {
            instance: self.instance.clone(),
            store: self.store.clone(),
            events: self.events.clone(),
            producer: self.producer.clone(),
            mutants: self.mutants,
        }
    }
}
