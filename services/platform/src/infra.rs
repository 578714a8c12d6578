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
    /// Kafka `max.poll.interval.ms` of the instance's consumers.
    pub max_poll_interval: std::time::Duration,
    /// The instance's metrics.
    pub metrics: Arc<crate::metrics::Registry>,
    /// Mutual TLS between services (its gRPC server and its channels to peers); `None`:
    /// plain (always in the simulation).
    pub tls: Option<Arc<crate::tls::Tls>>,
}

impl<S: Schema> Clone for Infra<S> {
    fn clone(&self) -> Self {
        Infra {
            instance: self.instance.clone(),
            store: self.store.clone(),
            events: self.events.clone(),
            producer: self.producer.clone(),
            mutants: self.mutants,
            max_poll_interval: self.max_poll_interval,
            metrics: self.metrics.clone(),
            tls: self.tls.clone(),
        }
    }
}

impl<S: Schema> Infra<S> {
    /// Spawns this instance's outbox relay, woken by `outbox` (the `work-without-claims`
    /// mutant relays without the store's lease).
    pub fn spawn_relay(
        &self,
        outbox: crate::outbox::OutboxSignal,
        shutdown: crate::Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(crate::outbox::run_relay(
            self.store.clone(),
            self.events.clone(),
            self.producer.clone(),
            crate::outbox::RelayConfig {
                without_lease: self.mutants.work_without_claims,
                drop_trace: self.mutants.relay_drops_trace,
                metrics: Some(self.metrics.clone()),
                ..crate::outbox::RelayConfig::default()
            },
            self.instance.clone(),
            outbox,
            shutdown,
        ))
    }

    /// The settings of a consumer loop of `group` on `topics`: manual commits after the
    /// effect, the inbox, dead letters through this instance's producer (the mutants
    /// `auto-commit-before-processing` and `consumer-without-inbox` applied).
    pub fn consumer_settings(
        &self,
        group: &str,
        client_rack: Option<String>,
        topics: &[&str],
    ) -> crate::inbox::ConsumerSettings {
        let mut consumer = crate::ports::ConsumerConfig::new(group);
        consumer.client_rack = client_rack;
        consumer.enable_auto_commit = self.mutants.auto_commit_before_processing;
        consumer.max_poll_interval = self.max_poll_interval;
        crate::inbox::ConsumerSettings {
            consumer,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            producer: self.producer.clone(),
            inbox: !self.mutants.consumer_without_inbox,
            attempts_max: None,
            lookup_first: false,
            lanes: crate::inbox::Lanes::One,
            metrics: Some(self.metrics.clone()),
        }
    }

    /// Spawns a consumer loop of `settings` applying `effect` once per event.
    pub fn spawn_consumer(
        &self,
        settings: crate::inbox::ConsumerSettings,
        effect: crate::inbox::Effect<S>,
        shutdown: crate::Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(crate::inbox::run_consumer(
            self.store.clone(),
            self.events.clone(),
            settings,
            effect,
            shutdown,
        ))
    }
}
