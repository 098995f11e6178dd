//! The stall watchdog: a projector that has records to read but whose consumer group's
//! offsets do not move is stalled, whatever the reason (its group gets no partitions, a gap
//! that nothing repairs, a sink that stays down), and must not look healthy. The watchdog
//! looks at the group from outside, with a client of its own that does not join it: the
//! topic's end offsets against the group's committed offsets. Duplicates count as progress
//! (their offsets are stored too); an idle member of a group whose other members progress
//! is fine.
//!
//! On a stall it logs an error, fails the role's readiness with the reason, and asks the
//! loop to recreate its consumer (a new group member); after `MAX_RECREATIONS` tries without
//! progress it stops recreating and keeps reporting (escalation is the operator's, alerted by
//! `ordo_projector_stalled`). Progress makes the role ready again.
//!
//! It also watches for records the broker lost ([`LossWatch`]): a log whose end goes back, a
//! committed offset that goes back or vanishes, or one beyond the log's end (an in-memory
//! broker restarted, a topic deleted and recreated). The loop passes that on to the sink
//! ([`LostRecords`]), which rebuilds its read model from the source of truth.

use super::ProjectorConfig;
use crate::metrics::ProjectorMetrics;
use ordo_common::health::RoleHealth;
use ordo_common::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Consumer recreations in a row without progress before the watchdog only reports.
const MAX_RECREATIONS: u32 = 3;
/// Bound of each metadata, watermark and offset request of a check.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The group as one check saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Observation {
    /// The group's committed offset per partition (absent: nothing committed yet).
    pub committed: BTreeMap<i32, i64>,
    /// Records between the committed offsets (or the log start) and the log end.
    pub lag: i64,
    /// Partitions assigned to this member.
    pub assigned: usize,
    /// The log's end offset per partition.
    pub ends: BTreeMap<i32, i64>,
}

/// Whether the broker lost records, from one observation to the next. Offsets only grow
/// while a broker keeps its data, so a partition whose log end is below an end seen before,
/// or below the group's committed offset, lost records. A broker may answer a stale end now
/// and then, so a loss is reported only when two looks in a row see it, and once.
#[derive(Default)]
pub(super) struct LossWatch {
    /// The highest log end seen per partition (reset to the new end after a loss).
    high: BTreeMap<i32, i64>,
    /// The committed offset a loss was reported for, per partition: it stays beyond the
    /// new log's end until the consumer commits again, and is no new loss.
    reported: BTreeMap<i32, i64>,
    /// Why each partition looked like it lost records at the last look.
    suspect: BTreeMap<i32, String>,
}

impl LossWatch {
    /// What was lost, confirmed by this look and the one before, if anything.
    pub fn observe(&mut self, seen: &Observation) -> Option<String> {
        let mut confirmed = Vec::new();
        let mut suspect = BTreeMap::new();
        for (&partition, &end) in &seen.ends {
            let committed = seen.committed.get(&partition).copied();
            let high = self.high.get(&partition).copied().unwrap_or(end);
            let why = if end < high {
                Some(format!(
                    "partition {partition}: the log's end went back from {high} to {end}"
                ))
            } else {
                committed
                    .filter(|c| *c > end && self.reported.get(&partition) != Some(c))
                    .map(|c| format!("partition {partition}: committed offset {c} is beyond the log's end {end}"))
            };
            match why {
                Some(why) if self.suspect.contains_key(&partition) => {
                    confirmed.push(why);
                    self.high.insert(partition, end);
                    if let Some(c) = committed {
                        self.reported.insert(partition, c);
                    }
                }
                Some(why) => {
                    suspect.insert(partition, why);
                }
                None => {
                    self.high.insert(partition, high.max(end));
                }
            }
        }
        self.suspect = suspect;
        (!confirmed.is_empty()).then(|| confirmed.join("; "))
    }
}

/// Whether the group progresses, from one observation to the next.
pub(super) struct StallWatch {
    timeout: Duration,
    last: Option<BTreeMap<i32, i64>>,
    /// Since when the offsets stood still with records to read.
    since: Instant,
}

impl StallWatch {
    pub fn new(timeout: Duration, now: Instant) -> Self {
        Self {
            timeout,
            last: None,
            since: now,
        }
    }

    /// The reason the group is stalled, or `None` while it progresses (or has nothing to
    /// read) or has stood still for less than the timeout.
    pub fn observe(&mut self, now: Instant, seen: &Observation) -> Option<String> {
        let moved = self.last.as_ref() != Some(&seen.committed);
        self.last = Some(seen.committed.clone());
        if moved || seen.lag == 0 {
            self.since = now;
            return None;
        }
        let still = now.duration_since(self.since);
        (still >= self.timeout).then(|| {
            format!(
                "{} records to read and the group's offsets have not moved for {} s; this \
                 member holds {} partitions",
                seen.lag,
                still.as_secs(),
                seen.assigned
            )
        })
    }

    /// Gives a recreated consumer a whole timeout before the next verdict.
    pub fn restart(&mut self, now: Instant) {
        self.since = now;
    }
}

/// What the watchdog shares with the loop.
pub(super) struct Watched {
    /// Partitions assigned to the loop's consumer (set by the rebalance callbacks).
    pub assigned: Arc<AtomicUsize>,
    /// Wakes the loop to recreate its consumer.
    pub recreate: Arc<Notify>,
    pub lost: Arc<LostRecords>,
}

/// Records the broker lost, reported to the loop (by the watchdog, or by the loop itself when
/// a partition's offsets go back), which tells the sink.
#[derive(Default)]
pub(super) struct LostRecords {
    detail: Mutex<Option<String>>,
    notify: Notify,
}

impl LostRecords {
    /// Reports a loss; one not yet taken is replaced (one rebuild covers both).
    pub fn report(&self, detail: String) {
        *self.detail.lock().unwrap_or_else(PoisonError::into_inner) = Some(detail);
        self.notify.notify_one();
    }

    pub fn take(&self) -> Option<String> {
        self.detail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Resolves when a loss is reported.
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

/// Checks every `config.stall_timeout / 6` (1 to 10 s) until `stop`.
pub(super) async fn watch(
    config: ProjectorConfig,
    health: RoleHealth,
    metrics: ProjectorMetrics,
    watched: Watched,
    stop: CancellationToken,
) {
    let admin: Arc<BaseConsumer> = match kafka::client_config(&config.brokers)
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .create()
    {
        Ok(admin) => Arc::new(admin),
        Err(error) => {
            tracing::error!(%error, "cannot create the stall watchdog's client; no stall checks");
            return;
        }
    };
    let every = (config.stall_timeout / 6).clamp(Duration::from_secs(1), Duration::from_secs(10));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stall = StallWatch::new(config.stall_timeout, Instant::now());
    let mut recreations = 0;
    let mut losses = LossWatch::default();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let assigned = watched.assigned.load(Ordering::Relaxed);
        metrics.set_assigned_partitions(assigned);
        let (client, topic) = (admin.clone(), config.topic.clone());
        let seen = tokio::task::spawn_blocking(move || observe(&client, &topic, assigned)).await;
        let seen = match seen {
            Ok(Ok(seen)) => seen,
            Ok(Err(error)) => {
                // The broker may be away: the loop waits that out and says so itself.
                tracing::debug!(%error, "stall check skipped: the group's offsets are unknown");
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "stall check failed");
                continue;
            }
        };
        if let Some(detail) = losses.observe(&seen) {
            watched.lost.report(detail);
        }
        match stall.observe(Instant::now(), &seen) {
            None if health.reason().is_some() => {
                tracing::info!(projector = %config.name, "the projector progresses again");
                health.ready();
                metrics.set_stalled(false);
                recreations = 0;
            }
            None => {}
            Some(reason) => {
                health.not_ready(format!("stalled: {reason}"));
                metrics.set_stalled(true);
                if recreations < MAX_RECREATIONS {
                    recreations += 1;
                    tracing::error!(
                        projector = %config.name,
                        reason,
                        recreation = recreations,
                        "projector stalled; recreating its consumer (a new group member)"
                    );
                    metrics.consumer_recreated();
                    watched.recreate.notify_one();
                    stall.restart(Instant::now());
                } else {
                    tracing::error!(
                        projector = %config.name,
                        reason,
                        recreations,
                        "projector still stalled after recreating its consumer; it needs an operator"
                    );
                }
            }
        }
    }
}

/// The group's committed offsets and lag on `topic` (blocking: librdkafka's calls are).
fn observe(admin: &BaseConsumer, topic: &str, assigned: usize) -> anyhow::Result<Observation> {
    let metadata = admin.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut wanted = TopicPartitionList::new();
    for partition in &partitions {
        wanted.add_partition(topic, *partition);
    }
    let committed = admin.committed_offsets(wanted, REQUEST_TIMEOUT)?;
    let mut seen = Observation {
        committed: BTreeMap::new(),
        lag: 0,
        assigned,
        ends: BTreeMap::new(),
    };
    for element in committed.elements() {
        let (low, high) = admin.fetch_watermarks(topic, element.partition(), REQUEST_TIMEOUT)?;
        seen.ends.insert(element.partition(), high);
        let from = match element.offset() {
            Offset::Offset(offset) => {
                seen.committed.insert(element.partition(), offset);
                offset
            }
            _ => low,
        };
        seen.lag += (high - from).max(0);
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(committed: &[(i32, i64)], lag: i64) -> Observation {
        Observation {
            committed: committed.iter().copied().collect(),
            lag,
            assigned: 0,
            ends: BTreeMap::new(),
        }
    }

    #[test]
    fn offsets_that_stand_still_with_records_to_read_are_a_stall_after_the_timeout() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut watch = StallWatch::new(Duration::from_secs(30), start);
        assert_eq!(watch.observe(at(0), &seen(&[(0, 5)], 10)), None);
        assert_eq!(watch.observe(at(29), &seen(&[(0, 5)], 10)), None);
        let reason = watch
            .observe(at(30), &seen(&[(0, 5)], 10))
            .expect("stalled");
        assert!(reason.contains("10 records to read"), "{reason}");
        assert!(reason.contains("holds 0 partitions"), "{reason}");
        // Moving offsets (duplicates stored count too) are progress, and start the clock anew.
        assert_eq!(watch.observe(at(31), &seen(&[(0, 6)], 9)), None);
        assert_eq!(watch.observe(at(60), &seen(&[(0, 6)], 9)), None);
        assert!(watch.observe(at(61), &seen(&[(0, 6)], 9)).is_some());
    }

    #[test]
    fn nothing_to_read_is_never_a_stall_and_a_restart_gives_a_whole_timeout() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut watch = StallWatch::new(Duration::from_secs(10), start);
        assert_eq!(watch.observe(at(0), &seen(&[(0, 5)], 0)), None);
        assert_eq!(watch.observe(at(100), &seen(&[(0, 5)], 0)), None);
        // Records arrive and nothing consumes them: counted from the last look with none.
        assert!(watch.observe(at(101), &seen(&[(0, 5)], 3)).is_none());
        assert!(watch.observe(at(110), &seen(&[(0, 5)], 3)).is_some());
        watch.restart(at(110));
        assert!(watch.observe(at(119), &seen(&[(0, 5)], 3)).is_none());
        assert!(watch.observe(at(120), &seen(&[(0, 5)], 3)).is_some());
    }

    fn at(committed: &[(i32, i64)], ends: &[(i32, i64)]) -> Observation {
        Observation {
            ends: ends.iter().copied().collect(),
            ..seen(committed, 0)
        }
    }

    #[test]
    fn a_log_end_that_goes_back_is_records_lost_once_two_looks_agree() {
        let mut watch = LossWatch::default();
        assert_eq!(watch.observe(&at(&[(0, 5)], &[(0, 9), (1, 0)])), None);
        assert_eq!(
            watch.observe(&at(&[(0, 9), (1, 2)], &[(0, 12), (1, 3)])),
            None
        );
        // A stale answer from the broker, once: no loss.
        assert_eq!(watch.observe(&at(&[(0, 9)], &[(0, 10), (1, 3)])), None);
        assert_eq!(watch.observe(&at(&[(0, 12)], &[(0, 14), (1, 3)])), None);
        // An in-memory broker restarted: its logs and the group's offsets are gone.
        assert_eq!(
            watch.observe(&at(&[], &[(0, 1), (1, 0)])),
            None,
            "one look is not enough"
        );
        let lost = watch.observe(&at(&[], &[(0, 2), (1, 0)])).expect("lost");
        assert!(
            lost.contains("partition 0: the log's end went back from 14 to 2"),
            "{lost}"
        );
        assert!(
            lost.contains("partition 1: the log's end went back from 3 to 0"),
            "{lost}"
        );
        // Reported once: from here the new log is the base.
        assert_eq!(watch.observe(&at(&[(0, 1)], &[(0, 4), (1, 0)])), None);
        assert_eq!(watch.observe(&at(&[(0, 4)], &[(0, 5), (1, 1)])), None);
    }

    #[test]
    fn a_committed_offset_beyond_the_log_end_is_records_lost() {
        // A topic recreated while the group kept its offsets.
        let mut watch = LossWatch::default();
        assert_eq!(watch.observe(&at(&[(0, 40)], &[(0, 3)])), None);
        let lost = watch.observe(&at(&[(0, 40)], &[(0, 3)])).expect("lost");
        assert!(
            lost.contains("committed offset 40 is beyond the log's end 3"),
            "{lost}"
        );
        // Reported once, and the offsets that then restart from the log's start are no news.
        assert_eq!(watch.observe(&at(&[(0, 40)], &[(0, 5)])), None);
        assert_eq!(watch.observe(&at(&[(0, 40)], &[(0, 5)])), None);
        assert_eq!(watch.observe(&at(&[(0, 2)], &[(0, 6)])), None);
        assert_eq!(watch.observe(&at(&[(0, 6)], &[(0, 6)])), None);
    }
}
