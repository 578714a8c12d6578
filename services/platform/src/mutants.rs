//! Deliberately broken variants ("mutants") that the simulation's checkers must catch.
//! Each switch weakens one guarantee; all are off in production. A checker that never fails
//! on its mutant proves nothing, so every mutant has a test that expects a failure.

use serde::{Deserialize, Serialize};

/// Switches for the services' guarantees. `Default` is the correct system.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mutants {
    /// order: commit the status change without an outbox row, then publish it directly
    /// (a dual write: a crash or a Kafka outage between the two loses the event).
    pub publish_without_outbox: bool,
    /// payment: call the PSP with a fresh idempotency key on every attempt, so a retried
    /// charge after a timeout charges again.
    pub psp_call_without_idempotency_key: bool,
    /// order: call payment's Charge with a fresh idempotency key on every attempt.
    pub charge_without_idempotency_key: bool,
    /// consumers: apply each record's effect without an inbox mark, so a redelivered record
    /// takes effect twice.
    pub consumer_without_inbox: bool,
    /// consumers: `enable.auto.commit=true`, offsets committed at poll time, before the
    /// effect is durable: a crash skips records.
    pub auto_commit_before_processing: bool,
    /// producers: `acks=1` instead of `acks=all`.
    pub acks_leader_only: bool,
    /// producers: `enable.idempotence=false` (retries may duplicate).
    pub idempotence_off: bool,
    /// Kafka: `unclean.leader.election.enable=true`.
    pub unclean_leader_election: bool,
    /// Kafka: `min.insync.replicas=1`, so `acks=all` is answered by a leader left alone in
    /// the ISR, and the write lives on one host until it is replicated.
    pub min_insync_replicas_one: bool,
    /// every service: no claims and no relay lease, so every instance drives every active
    /// record and relays every outbox row at once.
    pub work_without_claims: bool,
    /// order: a step whose deadline passed with its outcome unknown is compensated at once,
    /// without asking the provider what happened (a shipment is cancelled and the order
    /// refunded whatever the courier did; a charge is failed whatever the PSP did).
    pub compensate_without_asking: bool,
    /// delivery: a cancel sent to the courier counts as done whatever the courier answers
    /// (it answers DELIVERED when the goods already arrived).
    pub cancel_ignores_courier_answer: bool,
    /// order: admission control runs after the new order is committed, so a request answered
    /// 429/503 has created an order anyway (half-created).
    pub shed_after_create: bool,
    /// user: the email's uniqueness key keeps its case, so `Ann@x.org` and `ann@x.org` become
    /// two accounts.
    pub email_key_case_sensitive: bool,
    /// gateway: an order is shown to whoever asks for its id, not only to its owner (IDOR).
    pub owner_check_skipped: bool,
    /// gateway: any `If-None-Match` on an ad is answered 304, whether its tag is current or
    /// not, so a client keeps showing an ad that changed.
    pub not_modified_unchecked: bool,
    /// gateway: an order is charged the price the client says it saw, not the ad's.
    pub order_price_from_client: bool,
    /// search: hidden, banned and deleted ads are found too (the status filter is missing).
    pub search_shows_inactive: bool,
    /// gateway: cached ad cards are never dropped when the ad changes (they live out their
    /// TTL).
    pub cache_not_invalidated: bool,
    /// media: a completed upload is marked READY without asking storage what arrived, so a
    /// photo whose bytes never came is attached to its ad.
    pub upload_unchecked: bool,
    /// moderation: a worker publishes each result itself before its decision commits, not
    /// through the outbox (a dual write: a failed commit publishes a decision that is made
    /// again, a failed publish loses one).
    pub results_without_outbox: bool,
    /// ad, user: BAN results are consumed but change nothing (the banned ad stays for sale,
    /// the banned user keeps logging in).
    pub ban_not_enforced: bool,
    /// notification: a resumed session goes live at the log's end without replaying what
    /// the client missed (fan-out through hints only), so updates committed while the client
    /// was away never reach it.
    pub notify_without_replay: bool,
    /// notification: no hints between instances (nothing published on Redis), so a session
    /// learns of an update another instance committed only at its next position check.
    pub notify_without_hints: bool,
    /// notification: the worker sends each attempt to the messaging provider under a fresh
    /// idempotency key, so a send whose answer was lost is delivered again.
    pub message_without_idempotency_key: bool,
    /// gateway: its circuit breakers never open, so while a service behind it is slow every
    /// request waits out the whole deadline before it is refused.
    pub breaker_never_opens: bool,
    /// outbox relay: records go to Kafka without their `traceparent`/`tracestate`, so the
    /// consumers of an order's events lose the trace of the request that created it.
    pub relay_drops_trace: bool,
    /// notification: the worker calls the messaging provider in a trace of its own, not in
    /// the trace of the `Notify` that queued the message.
    pub message_drops_trace: bool,
}

impl Mutants {
    /// The mutant named `name` (as in scenario files and `ci/mutants`).
    pub fn named(name: &str) -> Option<Mutants> {
        let mut m = Mutants::default();
        match name {
            "publish-without-outbox" => m.publish_without_outbox = true,
            "psp-call-without-idempotency-key" => m.psp_call_without_idempotency_key = true,
            "charge-without-idempotency-key" => m.charge_without_idempotency_key = true,
            "consumer-without-inbox" => m.consumer_without_inbox = true,
            "auto-commit-before-processing" => m.auto_commit_before_processing = true,
            "acks-1" => m.acks_leader_only = true,
            "idempotence-off" => m.idempotence_off = true,
            "unclean-leader-election" => m.unclean_leader_election = true,
            "min-insync-replicas-1" => m.min_insync_replicas_one = true,
            "work-without-claims" => m.work_without_claims = true,
            "compensate-without-asking" => m.compensate_without_asking = true,
            "cancel-ignores-courier-answer" => m.cancel_ignores_courier_answer = true,
            "shed-after-create" => m.shed_after_create = true,
            "email-key-case-sensitive" => m.email_key_case_sensitive = true,
            "owner-check-skipped" => m.owner_check_skipped = true,
            "not-modified-unchecked" => m.not_modified_unchecked = true,
            "order-price-from-client" => m.order_price_from_client = true,
            "search-shows-inactive" => m.search_shows_inactive = true,
            "cache-not-invalidated" => m.cache_not_invalidated = true,
            "upload-unchecked" => m.upload_unchecked = true,
            "results-without-outbox" => m.results_without_outbox = true,
            "ban-not-enforced" => m.ban_not_enforced = true,
            "notify-without-replay" => m.notify_without_replay = true,
            "notify-without-hints" => m.notify_without_hints = true,
            "message-without-idempotency-key" => m.message_without_idempotency_key = true,
            "breaker-never-opens" => m.breaker_never_opens = true,
            "relay-drops-trace" => m.relay_drops_trace = true,
            "message-drops-trace" => m.message_drops_trace = true,
            _ => return None,
        }
        Some(m)
    }

    /// Every mutant's name.
    pub const NAMES: [&'static str; 28] = [
        "publish-without-outbox",
        "psp-call-without-idempotency-key",
        "charge-without-idempotency-key",
        "consumer-without-inbox",
        "auto-commit-before-processing",
        "acks-1",
        "idempotence-off",
        "unclean-leader-election",
        "min-insync-replicas-1",
        "work-without-claims",
        "compensate-without-asking",
        "cancel-ignores-courier-answer",
        "shed-after-create",
        "email-key-case-sensitive",
        "owner-check-skipped",
        "not-modified-unchecked",
        "order-price-from-client",
        "search-shows-inactive",
        "cache-not-invalidated",
        "upload-unchecked",
        "results-without-outbox",
        "ban-not-enforced",
        "notify-without-replay",
        "notify-without-hints",
        "message-without-idempotency-key",
        "breaker-never-opens",
        "relay-drops-trace",
        "message-drops-trace",
    ];

    /// `config` with the producer mutants applied.
    pub fn producer(
        &self,
        mut config: crate::ports::ProducerConfig,
    ) -> crate::ports::ProducerConfig {
        if self.acks_leader_only {
            config.acks = crate::ports::Acks::Leader;
        }
        if self.idempotence_off {
            config.enable_idempotence = false;
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_switches_exactly_one_guarantee() {
        for name in Mutants::NAMES {
            let m = Mutants::named(name).expect("known");
            assert_ne!(m, Mutants::default(), "{name}");
        }
        assert_eq!(Mutants::named("nonsense"), None);
    }
}
