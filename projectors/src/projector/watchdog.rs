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

use super::ProjectorConfig;
use crate::metrics::ProjectorMetrics;
use ordo_common::health::RoleHealth;
use ordo_common::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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
    };
    for element in committed.elements() {
        let (low, high) = admin.fetch_watermarks(topic, element.partition(), REQUEST_TIMEOUT)?;
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
}
