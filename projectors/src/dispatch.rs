//! The claim side of the dispatch model (the ready, scheduled and running sets the projector
//! maintains, see [`crate::keys`]): one atomic Lua script promotes due jobs and pops the best
//! ready ones for a worker, a released claim goes back where it was, and [`ReadyWakeups`]
//! tells waiting claims when a job became ready.

use crate::keys;
use futures::StreamExt;
use ordo_common::Backoff;
use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::{CancellationToken, DropGuard};

/// A job popped for a worker: it may start attempt `attempt` of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub queue: String,
    pub job_id: String,
    pub attempt: u32,
}

#[derive(Clone)]
pub struct Dispatch {
    connection: ConnectionManager,
    claim: Script,
    release: Script,
}

/// Running → ready, scored like `apply.lua` does: (9 − priority)·10¹³ + enqueue ms.
const RELEASE: &str = r"
local priority = tonumber(redis.call('HGET', KEYS[1], 'priority') or '0')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], (9 - priority) * 1e13 + tonumber(ARGV[2]), ARGV[1])";

impl Dispatch {
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            claim: Script::new(include_str!("lua/claim.lua")),
            release: Script::new(RELEASE),
        }
    }

    /// Claims up to `max` jobs of `tenant` from `queues` (in that order of preference) in
    /// `namespace`, each running until `lease` from `now_ms`.
    pub async fn claim(
        &mut self,
        namespace: &str,
        tenant: &str,
        queues: &[String],
        max: usize,
        now_ms: i64,
        lease: Duration,
    ) -> RedisResult<Vec<Claim>> {
        if max == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        let flat: Vec<String> = self
            .claim
            .arg(namespace)
            .arg(tenant)
            .arg(now_ms)
            .arg(lease.as_millis() as u64)
            .arg(max)
            .arg(queues)
            .invoke_async(&mut self.connection)
            .await?;
        Ok(flat
            .chunks_exact(3)
            .map(|c| Claim {
                queue: c[0].clone(),
                job_id: c[1].clone(),
                attempt: c[2].parse().unwrap_or(0),
            })
            .collect())
    }

    /// Puts a claim the write side could not start (for a reason that may pass) back in the
    /// ready set at `enqueued_ms`, at the job's own priority.
    pub async fn release(
        &mut self,
        namespace: &str,
        tenant: &str,
        claim: &Claim,
        enqueued_ms: i64,
    ) -> RedisResult<()> {
        self.release
            .key(keys::job(namespace, &claim.job_id))
            .key(keys::dispatch(namespace, "running", tenant, &claim.queue))
            .key(keys::dispatch(namespace, "ready", tenant, &claim.queue))
            .arg(&claim.job_id)
            .arg(enqueued_ms)
            .invoke_async(&mut self.connection)
            .await
    }
}

/// Wake-ups for claims waiting on empty queues.
///
/// The live projector publishes `{tenant}:{queue}` on [`keys::wake_channel`] whenever it puts a
/// job in a ready set (`apply.lua`). A process serving claims subscribes once, and a claim that
/// found nothing waits for a wake-up of one of its queues instead of polling Redis every few
/// milliseconds: it hears of a job as soon as the job is claimable, and an idle worker costs
/// nothing. Wake-ups are hints. One lost to a reconnect delays a claim until its own next look
/// (the caller keeps a slow fallback poll, which also finds delayed jobs falling due), and one
/// for a job another claim took first finds nothing.
pub struct ReadyWakeups {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
    /// Whether the subscription is up (and the wake-up of everyone after subscribing done).
    subscribed: watch::Sender<bool>,
    _stop: DropGuard,
}

/// Signals kept for queues nobody waits on, before they are swept.
const MAX_IDLE_SIGNALS: usize = 10_000;
const RESUBSCRIBE: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

impl ReadyWakeups {
    /// Subscribes to the wake channel of `prefix` in the background, reconnecting with backoff,
    /// until the returned value is dropped.
    pub fn subscribe(client: redis::Client, prefix: &str) -> Arc<Self> {
        let stop = CancellationToken::new();
        let wakeups = Arc::new(Self {
            queues: Mutex::default(),
            subscribed: watch::Sender::new(false),
            _stop: stop.clone().drop_guard(),
        });
        let channel = keys::wake_channel(prefix);
        tokio::spawn(listen(client, channel, Arc::downgrade(&wakeups), stop));
        wakeups
    }

    /// The signal of `tenant`'s `queue`. Enable a `notified()` of it before looking in the
    /// queue, so that a wake-up between the look and the wait is not missed.
    pub fn signal(&self, tenant: &str, queue: &str) -> Arc<Notify> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if queues.len() >= MAX_IDLE_SIGNALS {
            queues.retain(|_, signal| Arc::strong_count(signal) > 1);
        }
        queues
            .entry(format!("{tenant}:{queue}"))
            .or_default()
            .clone()
    }

    /// Returns once the subscription is up: wake-ups announced from then on arrive.
    pub async fn subscribed(&self) {
        let mut subscribed = self.subscribed.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = subscribed.wait_for(|up| *up).await;
    }

    /// One job became ready: one waiting claim looks, not all of them.
    fn wake(&self, queue: &str) {
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(signal) = queues.get(queue) {
            signal.notify_one();
        }
    }

    fn wake_all(&self) {
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues.values().for_each(|signal| signal.notify_waiters());
    }
}

async fn listen(
    client: redis::Client,
    channel: String,
    wakeups: std::sync::Weak<ReadyWakeups>,
    stop: CancellationToken,
) {
    let mut failures = 0;
    loop {
        let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            RedisResult::Ok(pubsub.into_on_message())
        })
        .await
        .unwrap_or_else(|_| Err((redis::ErrorKind::IoError, "subscribe timed out").into()));
        match subscribed {
            Ok(mut messages) => {
                failures = 0;
                // What was announced while unsubscribed is lost: every waiting claim looks.
                let Some(w) = wakeups.upgrade() else { return };
                w.wake_all();
                w.subscribed.send_replace(true);
                drop(w);
                loop {
                    let message = tokio::select! {
                        message = messages.next() => message,
                        _ = stop.cancelled() => return,
                    };
                    let Some(message) = message else { break };
                    let Some(w) = wakeups.upgrade() else { return };
                    if let Ok(queue) = message.get_payload::<String>() {
                        w.wake(&queue);
                    }
                }
                if let Some(w) = wakeups.upgrade() {
                    w.subscribed.send_replace(false);
                }
                tracing::warn!(%channel, "lost the claim wake-up subscription; resubscribing");
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, %channel, "cannot subscribe to claim wake-ups; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RESUBSCRIBE.delay(failures.max(1))) => {}
            _ = stop.cancelled() => return,
        }
    }
}
