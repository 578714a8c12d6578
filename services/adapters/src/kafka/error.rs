//! The one place rdkafka errors become [`EventLogError`]s.

use platform::ports::EventLogError;
use rdkafka::{error::KafkaError, types::RDKafkaErrorCode};

/// Maps `error`, raised while doing `what` on `topic` (for `UnknownTopic`), onto the port's
/// error.
pub(crate) fn event_log_error(what: &str, topic: &str, error: &KafkaError) -> EventLogError {
    let mapped = match error {
        KafkaError::ConsumerCommit(code) if is_fenced(*code) => EventLogError::Fenced,
        KafkaError::MessageProduction(code)
        | KafkaError::MessageConsumption(code)
        | KafkaError::MessageConsumptionFatal(code)
        | KafkaError::ConsumerCommit(code)
        | KafkaError::MetadataFetch(code)
        | KafkaError::AdminOp(code)
        | KafkaError::Global(code)
        | KafkaError::OffsetFetch(code)
        | KafkaError::Flush(code) => from_code(what, topic, *code),
        other => EventLogError::Fatal(format!("{what}: {other}")),
    };
    if !matches!(mapped, EventLogError::Fatal(_)) {
        tracing::debug!(%error, what, topic, "event log call failed, retriable");
    }
    mapped
}

/// Maps a librdkafka / broker error code.
pub(crate) fn from_code(what: &str, topic: &str, code: RDKafkaErrorCode) -> EventLogError {
    use RDKafkaErrorCode as C;
    match code {
        C::NotEnoughReplicas | C::NotEnoughReplicasAfterAppend => EventLogError::NotEnoughReplicas,
        C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut | C::TimedOutQueue => {
            EventLogError::Timeout(format!("{what}: {code}"))
        }
        C::BrokerTransportFailure
        | C::AllBrokersDown
        | C::Resolve
        | C::BrokerNotAvailable
        | C::NetworkException
        | C::LeaderNotAvailable
        | C::NotLeaderForPartition
        | C::FencedLeaderEpoch
        | C::CoordinatorNotAvailable
        | C::NotCoordinator
        | C::CoordinatorLoadInProgress
        | C::QueueFull
        | C::KafkaStorageError => EventLogError::Unavailable(format!("{what}: {code}")),
        code if is_fenced(code) => EventLogError::Fenced,
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition | C::UnknownTopicId => {
            EventLogError::UnknownTopic(topic.to_owned())
        }
        other => EventLogError::Fatal(format!("{what}: {other}")),
    }
}

/// Codes that mean "this member's generation is gone": its commit must not count.
fn is_fenced(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::IllegalGeneration
            | C::RebalanceInProgress
            | C::UnknownMemberId
            | C::AssignmentLost
            | C::FencedMemberEpoch
            | C::StaleMemberEpoch
            | C::FencedInstanceId
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_below_min_insync_replicas_is_not_enough_replicas() {
        for code in [
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::NotEnoughReplicasAfterAppend,
        ] {
            let e = KafkaError::MessageProduction(code);
            assert_eq!(
                event_log_error("send", "t", &e),
                EventLogError::NotEnoughReplicas
            );
        }
    }

    #[test]
    fn a_message_timeout_is_a_timeout_and_a_lost_broker_is_unavailable() {
        let timeout = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(matches!(
            event_log_error("send", "t", &timeout),
            EventLogError::Timeout(_)
        ));
        let down = KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown);
        assert!(matches!(
            event_log_error("poll", "t", &down),
            EventLogError::Unavailable(_)
        ));
        let transport = KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure);
        assert!(matches!(
            event_log_error("poll", "t", &transport),
            EventLogError::Unavailable(_)
        ));
    }

    #[test]
    fn a_commit_from_a_stale_generation_is_fenced() {
        for code in [
            RDKafkaErrorCode::IllegalGeneration,
            RDKafkaErrorCode::RebalanceInProgress,
            RDKafkaErrorCode::UnknownMemberId,
        ] {
            let e = KafkaError::ConsumerCommit(code);
            assert_eq!(event_log_error("commit", "t", &e), EventLogError::Fenced);
        }
    }

    #[test]
    fn an_unknown_topic_names_the_topic() {
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition);
        assert_eq!(
            event_log_error("send", "orders", &e),
            EventLogError::UnknownTopic("orders".into())
        );
    }

    #[test]
    fn configuration_mistakes_are_fatal() {
        let e = KafkaError::ClientCreation("bad".into());
        assert!(matches!(
            event_log_error("producer", "t", &e),
            EventLogError::Fatal(_)
        ));
    }
}
