//! The marketplace's Kafka topics, from the one list in `topics.tsv` at the repository root
//! (also read by `ci/infra/kafka.sh` and the Kafka model).

/// `order.status.changed`: every order status change, key = order id.
pub const ORDER_STATUS_CHANGED: &str = "order.status.changed";

/// `ad.changed`: every ad's new state after each change, key = ad id.
pub const AD_CHANGED: &str = "ad.changed";

/// `moderation.tasks`: work for the moderation workers, one task per report, key = target id
/// (tasks on one target are decided in order).
pub const MODERATION_TASKS: &str = "moderation.tasks";

/// `moderation.results`: every decision, key = target id.
pub const MODERATION_RESULTS: &str = "moderation.results";

/// The dead-letter topic of `topic`: records its consumers could not process.
pub fn dlq(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// One topic of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    pub partitions: i32,
}

/// Replication factor of every topic.
pub const REPLICATION_FACTOR: i32 = 3;
/// `min.insync.replicas` of every topic.
pub const MIN_INSYNC_REPLICAS: i32 = 2;

const LIST: &str = include_str!("../../../topics.tsv");

/// Every topic, in the list's order.
pub fn all() -> Vec<Topic> {
    LIST.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (name, partitions) = l.split_once('\t')?;
            Some(Topic {
                name: name.trim().to_owned(),
                partitions: partitions.trim().parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_names_every_topic_once_with_its_dead_letter_topic() {
        let topics = all();
        assert_eq!(
            topics.len(),
            LIST.lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .count(),
            "every line parses"
        );
        assert!(topics.contains(&Topic {
            name: ORDER_STATUS_CHANGED.into(),
            partitions: 6
        }));
        assert!(topics.iter().any(|t| t.name == dlq(ORDER_STATUS_CHANGED)));
        let mut names: Vec<_> = topics.iter().map(|t| &t.name).collect();
        names.dedup();
        assert_eq!(names.len(), topics.len());
    }
}
