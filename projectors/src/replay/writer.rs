//! Stored events to view updates ([`Decoder`]) and view updates to Redis ([`Applier`]),
//! each counting what it did for the [`Summary`].

use super::source::StoredEvent;
use super::{Gap, Summary, Undecodable};
use ordo_read_model::{ApplyOutcome, JobViews, ViewUpdate};
use redis::aio::ConnectionManager;
use std::collections::HashSet;

pub(super) struct Writer {
    pub decoder: Decoder,
    /// `None` for a dry run.
    pub applier: Option<Applier>,
}

impl Writer {
    /// Writes into the namespace of `target`, or nowhere (a dry run); with `forget`, removes
    /// each job from the model before its first event (in-place repair).
    pub fn new(target: Option<(&ConnectionManager, &str)>, forget: bool) -> Self {
        Self {
            decoder: Decoder {
                catching_up: false,
                seen_from: 0,
                seen: Vec::new(),
                broken: HashSet::new(),
                stats: Summary::default(),
            },
            applier: target.map(|(redis, namespace)| Applier {
                views: JobViews::new(redis.clone(), namespace),
                forget,
                catching_up: false,
                stats: Summary::default(),
            }),
        }
    }

    /// From now on, re-apply without forgetting, and count apart.
    pub fn catch_up(&mut self) {
        self.decoder.catching_up = true;
        if let Some(applier) = &mut self.applier {
            applier.catching_up = true;
            applier.forget = false;
        }
    }

    pub fn summary(&self, namespace: &str) -> Summary {
        let applied = self.applier.as_ref().map(|a| &a.stats);
        let read = &self.decoder.stats;
        Summary {
            namespace: namespace.to_owned(),
            applied: applied.map_or(0, |a| a.applied),
            duplicates: applied.map_or(0, |a| a.duplicates),
            gaps: applied.map_or_else(Vec::new, |a| a.gaps.clone()),
            caught_up_applied: applied.map_or(0, |a| a.caught_up_applied),
            ..read.clone()
        }
    }
}

/// Turns stored events into view updates, counting what it reads.
pub(super) struct Decoder {
    catching_up: bool,
    /// Which positions after `seen_from` the main pass read, so that the catch-up pass
    /// decodes and applies only the events committed too late for it.
    seen_from: i64,
    seen: Vec<bool>,
    /// Jobs with an undecodable event: their later events are skipped.
    broken: HashSet<String>,
    stats: Summary,
}

impl Decoder {
    /// Remembers which positions in (`from`, `until`] the main pass reads.
    pub fn track_seen(&mut self, from: i64, until: i64) {
        self.seen_from = from;
        self.seen = vec![false; (until - from) as usize];
    }

    pub fn decode(&mut self, page: &[StoredEvent]) -> Vec<ViewUpdate> {
        let mut updates = Vec::with_capacity(page.len());
        for row in page {
            let slot = usize::try_from(row.position - self.seen_from - 1)
                .ok()
                .filter(|slot| *slot < self.seen.len());
            if self.catching_up {
                if slot.is_some_and(|slot| self.seen[slot]) {
                    continue;
                }
                self.stats.caught_up_read += 1;
            } else {
                if let Some(slot) = slot {
                    self.seen[slot] = true;
                }
                self.stats.events += 1;
                if row.sequence == 1 {
                    self.stats.jobs += 1;
                }
            }
            if self.broken.contains(&row.aggregate_id) {
                self.stats.skipped += u64::from(!self.catching_up);
                continue;
            }
            let decoded = row.envelope().and_then(|envelope| {
                let event = envelope.event().map_err(|e| e.reason)?;
                Ok(ViewUpdate::of(&envelope, &event))
            });
            match decoded {
                Ok(update) => updates.push(update),
                Err(reason) => {
                    self.broken.insert(row.aggregate_id.clone());
                    let reported = self
                        .stats
                        .undecodable
                        .iter()
                        .any(|u| u.position == row.position);
                    if !reported {
                        self.stats.undecodable.push(Undecodable {
                            position: row.position,
                            job_id: row.aggregate_id.clone(),
                            sequence: row.sequence,
                            event_id: row.event_id(),
                            reason,
                        });
                    }
                }
            }
        }
        updates
    }
}

/// Applies view updates in pipelines, counting the outcomes.
pub(super) struct Applier {
    views: JobViews,
    forget: bool,
    catching_up: bool,
    stats: Summary,
}

impl Applier {
    pub async fn apply(&mut self, updates: &[ViewUpdate], batch_size: usize) -> anyhow::Result<()> {
        for batch in updates.chunks(batch_size) {
            if self.forget {
                self.views.forget(batch).await?;
            }
            let outcomes = self.views.apply(batch).await?;
            for (update, outcome) in batch.iter().zip(outcomes) {
                match (outcome, self.catching_up) {
                    (ApplyOutcome::Applied, false) => self.stats.applied += 1,
                    (ApplyOutcome::Applied, true) => self.stats.caught_up_applied += 1,
                    (ApplyOutcome::Duplicate, false) => self.stats.duplicates += 1,
                    (ApplyOutcome::Duplicate, true) => {}
                    (ApplyOutcome::Gap { last }, _) => self.stats.gaps.push(Gap {
                        job_id: update.job_id.clone(),
                        sequence: update.sequence,
                        last,
                    }),
                }
            }
        }
        Ok(())
    }
}
