//! One replica's log of one partition: records stamped with the leader epoch that wrote
//! them, the high watermark, and the idempotent producers' recent sequence numbers (rebuilt
//! from the log, as Kafka rebuilds its producer state). Plain data, no I/O.
//!
//! Like Kafka, the log does not fsync an append: a record is in the page cache when it is
//! written and reaches the disk at the operating system's next writeback. Each record's
//! write time is kept beside it, so a power loss can drop exactly what no writeback had
//! written yet ([`PartitionLog::lose_unwritten`]).

use std::collections::{BTreeMap, VecDeque};

use madsim::time::Instant;

use super::protocol::ProducerStamp;

/// Batches remembered per producer for duplicate detection (Kafka keeps the last 5).
pub const PRODUCER_BATCHES_CACHED_MAX: usize = 5;

/// A record as stored in a replica's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    /// The leader epoch in which the leader appended the record.
    pub leader_epoch: i32,
    /// Set by idempotent producers.
    pub stamp: Option<ProducerStamp>,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// What the leader should do with an incoming batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    New,
    /// A retry of a batch already in the log at this offset.
    Duplicate(i64),
    /// A gap in the producer's sequence (Kafka `OUT_OF_ORDER_SEQUENCE_NUMBER`).
    OutOfOrder,
    /// An older producer epoch than the log has seen.
    StaleEpoch,
}

/// An idempotent producer's recent batches in this log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ProducerHistory {
    epoch: i16,
    /// `(sequence, offset)` of the last batches, oldest first.
    batches: VecDeque<(i32, i64)>,
}

/// A replica's log of one partition. Offsets start at 0 and nothing is ever deleted except
/// by truncation (no retention in the model).
#[derive(Clone, Debug, Default)]
pub struct PartitionLog {
    records: Vec<Record>,
    /// When each record reached this replica's page cache (same index as `records`).
    written_at: Vec<Instant>,
    high_watermark: i64,
    producers: BTreeMap<i64, ProducerHistory>,
}

impl PartitionLog {
    pub fn log_end_offset(&self) -> i64 {
        self.records.len() as i64
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The leader epoch of the last record.
    pub fn last_epoch(&self) -> Option<i32> {
        self.records.last().map(|r| r.leader_epoch)
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Whether a batch with `stamp` is new, a duplicate, or out of order, as Kafka 4.4's
    /// `ProducerAppendInfo.checkSequence` decides: a producer this log holds nothing of (its
    /// records were truncated away, or it never wrote here) is accepted at any sequence; a
    /// known producer must continue its epoch's sequence or open a newer epoch at 0.
    pub fn check_sequence(&self, stamp: &ProducerStamp) -> SequenceCheck {
        let Some(history) = self.producers.get(&stamp.producer_id) else {
            return SequenceCheck::New;
        };
        if stamp.producer_epoch < history.epoch {
            return SequenceCheck::StaleEpoch;
        }
        if stamp.producer_epoch > history.epoch {
            return if stamp.sequence == 0 {
                SequenceCheck::New
            } else {
                SequenceCheck::OutOfOrder
            };
        }
        if let Some((_, offset)) = history.batches.iter().find(|(s, _)| *s == stamp.sequence) {
            return SequenceCheck::Duplicate(*offset);
        }
        match history.batches.back() {
            Some((last, _)) if stamp.sequence != last.wrapping_add(1) => SequenceCheck::OutOfOrder,
            _ => SequenceCheck::New,
        }
    }

    /// Appends one record as the leader in `leader_epoch` at time `now`; returns its offset.
    /// The caller checked the sequence first.
    pub fn append_as_leader(
        &mut self,
        now: Instant,
        leader_epoch: i32,
        stamp: Option<ProducerStamp>,
        key: String,
        payload: Vec<u8>,
        headers: Vec<(String, String)>,
    ) -> i64 {
        let offset = self.log_end_offset();
        let record = Record {
            offset,
            leader_epoch,
            stamp,
            key,
            payload,
            headers,
        };
        self.remember_producer(&record);
        self.records.push(record);
        self.written_at.push(now);
        offset
    }

    /// Appends records fetched from the leader at time `now`. Records not continuing this log
    /// exactly (a stale or overlapping response) are ignored; returns how many were appended.
    pub fn append_replicated(&mut self, now: Instant, records: Vec<Record>) -> usize {
        let mut appended = 0;
        for record in records {
            if record.offset != self.log_end_offset() {
                continue;
            }
            self.remember_producer(&record);
            self.records.push(record);
            self.written_at.push(now);
            appended += 1;
        }
        appended
    }

    /// Removes every record at `offset` and above (follower truncation).
    pub fn truncate_to(&mut self, offset: i64) {
        let offset = offset.clamp(0, self.log_end_offset());
        if offset == self.log_end_offset() {
            return;
        }
        self.records.truncate(offset as usize);
        self.written_at.truncate(offset as usize);
        self.high_watermark = self.high_watermark.min(offset);
        self.rebuild_producers();
    }

    /// A power loss: drops every record written after `last_writeback` (still only in the
    /// page cache); returns how many were lost. The high watermark, checkpointed apart from
    /// the log, is capped at the new end.
    pub fn lose_unwritten(&mut self, last_writeback: Instant) -> usize {
        let kept = self
            .written_at
            .iter()
            .position(|t| *t > last_writeback)
            .unwrap_or(self.written_at.len());
        let lost = self.records.len() - kept;
        self.truncate_to(kept as i64);
        lost
    }

    /// Raises the high watermark to `high_watermark` (never lowers it, never past the end).
    pub fn advance_high_watermark(&mut self, high_watermark: i64) {
        let hw = high_watermark.min(self.log_end_offset());
        if hw > self.high_watermark {
            self.high_watermark = hw;
        }
    }

    /// Records from `from` up to (not including) `until`, at most `records_max`.
    pub fn read(&self, from: i64, until: i64, records_max: usize) -> Vec<Record> {
        let until = until.min(self.log_end_offset());
        if from < 0 || from >= until {
            return Vec::new();
        }
        self.records[from as usize..until as usize]
            .iter()
            .take(records_max)
            .cloned()
            .collect()
    }

    /// Kafka `OffsetForLeaderEpoch`: the largest epoch in this log not above `epoch`, and
    /// the offset where it ends (the first offset of the next epoch, or the log end).
    /// `(None, 0)` when the log has no such epoch.
    pub fn epoch_end_offset(&self, epoch: i32) -> (Option<i32>, i64) {
        let found = self
            .records
            .iter()
            .rev()
            .map(|r| r.leader_epoch)
            .find(|e| *e <= epoch);
        match found {
            None => (None, 0),
            Some(e) => {
                let end = self
                    .records
                    .iter()
                    .find(|r| r.leader_epoch > e)
                    .map_or(self.log_end_offset(), |r| r.offset);
                (Some(e), end)
            }
        }
    }

    fn remember_producer(&mut self, record: &Record) {
        let Some(stamp) = record.stamp else { return };
        let history = self.producers.entry(stamp.producer_id).or_default();
        if stamp.producer_epoch != history.epoch {
            history.epoch = stamp.producer_epoch;
            history.batches.clear();
        }
        history.batches.push_back((stamp.sequence, record.offset));
        while history.batches.len() > PRODUCER_BATCHES_CACHED_MAX {
            history.batches.pop_front();
        }
    }

    fn rebuild_producers(&mut self) {
        self.producers.clear();
        let records = std::mem::take(&mut self.records);
        for record in &records {
            self.remember_producer(record);
        }
        self.records = records;
    }
}
