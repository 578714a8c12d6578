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
    /// Topic configs besides `min.insync.replicas` (e.g. `retention.ms`), in list order.
    pub configs: Vec<(String, String)>,
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
        .filter_map(parse_line)
        .collect()
}

/// `name<TAB>partitions<TAB>configs`; `None` if malformed.
fn parse_line(line: &str) -> Option<Topic> {
    let mut columns = line.split('\t');
    let name = columns.next()?.trim();
    let partitions = columns.next()?.trim().parse().ok()?;
    let configs = match columns.next()?.trim() {
        "-" => Vec::new(),
        text => text
            .split(',')
            .map(|pair| {
                let (k, v) = pair.split_once('=')?;
                let (k, v) = (k.trim(), v.trim());
                (!k.is_empty() && !v.is_empty()).then(|| (k.to_owned(), v.to_owned()))
            })
            .collect::<Option<Vec<_>>>()?,
    };
    if name.is_empty() || columns.next().is_some() {
        return None;
    }
    Some(Topic {
        name: name.to_owned(),
        partitions,
        configs,
    })
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
            partitions: 6,
            configs: vec![],
        }));
        assert!(topics.iter().any(|t| t.name == dlq(ORDER_STATUS_CHANGED)));
        let mut names: Vec<_> = topics.iter().map(|t| &t.name).collect();
        names.dedup();
        assert_eq!(names.len(), topics.len());
    }

    #[test]
    fn moderation_tasks_are_kept_a_few_days_and_deleted() {
        let tasks = all()
            .into_iter()
            .find(|t| t.name == MODERATION_TASKS)
            .expect("listed");
        assert_eq!(tasks.partitions, 12);
        let config = |k: &str| {
            tasks
                .configs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(config("cleanup.policy"), Some("delete"));
        let days = config("retention.ms")
            .and_then(|v| v.parse::<u64>().ok())
            .expect("retention.ms")
            / 86_400_000;
        assert!((2..=7).contains(&days), "{days} days");
    }

    #[test]
    fn a_malformed_line_is_refused() {
        assert!(parse_line("t\t3\tretention.ms").is_none());
        assert!(parse_line("t\tx\t-").is_none());
        assert!(parse_line("t\t3").is_none());
        assert!(parse_line("t\t3\t-\textra").is_none());
        assert_eq!(
            parse_line("t\t3\ta=1,b=2").map(|t| t.configs),
            Some(vec![("a".into(), "1".into()), ("b".into(), "2".into())])
        );
    }
}
