//! Wake-ups for claims waiting on empty queues.

use crate::keys;
use futures::StreamExt;
use ordo_protocol::Backoff;
use redis::RedisResult;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::{CancellationToken, DropGuard};

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
