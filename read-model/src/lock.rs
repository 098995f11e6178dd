//! A singleton lock in Redis (`SET NX PX` with renewal) for roles that must run once per
//! deployment (the lease reaper). Each acquisition gets a fencing token from a counter; the
//! holder renews only while the key still carries its token, so a holder that paused past
//! its expiry finds out at its next renewal instead of acting beside the new holder.

use crate::keys;
use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};
use std::sync::LazyLock;
use std::time::Duration;

static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/lock_renew.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/lock_release.lua")));

pub struct SingletonLock {
    connection: ConnectionManager,
    key: String,
    ttl: Duration,
    /// The fencing token while held.
    token: Option<u64>,
}

impl SingletonLock {
    /// The lock `{prefix}:lock:{name}`, which expires `ttl` after its last renewal.
    pub fn new(connection: ConnectionManager, prefix: &str, name: &str, ttl: Duration) -> Self {
        Self {
            connection,
            key: keys::lock(prefix, name),
            ttl,
            token: None,
        }
    }

    /// Takes the lock if it is free, or renews it if this holder still has it; answers the
    /// fencing token while held, `None` while another process holds it.
    pub async fn hold(&mut self) -> RedisResult<Option<u64>> {
        let ttl = self.ttl.as_millis() as u64;
        if let Some(token) = self.token {
            let renewed: i64 = RENEW
                .key(&self.key)
                .arg(token)
                .arg(ttl)
                .invoke_async(&mut self.connection)
                .await?;
            if renewed == 1 {
                return Ok(Some(token));
            }
            tracing::warn!(lock = %self.key, token, "lost the lock");
            self.token = None;
        }
        let token: u64 = redis::cmd("INCR")
            .arg(format!("{}:fence", self.key))
            .query_async(&mut self.connection)
            .await?;
        let taken: Option<String> = redis::cmd("SET")
            .arg(&self.key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl)
            .query_async(&mut self.connection)
            .await?;
        self.token = taken.map(|_| token);
        if self.token.is_some() {
            tracing::info!(lock = %self.key, token, "took the lock");
        }
        Ok(self.token)
    }

    /// Lets the lock go at once (on shutdown), if this holder still has it.
    pub async fn release(&mut self) -> RedisResult<()> {
        if let Some(token) = self.token.take() {
            let _: i64 = RELEASE
                .key(&self.key)
                .arg(token)
                .invoke_async(&mut self.connection)
                .await?;
        }
        Ok(())
    }
}

/// What [`SingletonLock::run`] did with the work.
#[derive(Debug)]
pub enum Held<T> {
    /// The work ran to its end with the lock held; the lock is released.
    Done(T),
    /// Another process holds the lock; the work did not start.
    Busy,
    /// The lock was lost (not renewed in time) and the work was abandoned where it stood.
    Lost,
}

impl SingletonLock {
    /// Runs `work` (given the fencing token) under the lock, renewing it every third of its
    /// TTL, and releases it at the end. Work that outlives its lock (a renewal fails) is
    /// dropped, so two holders never act at once for longer than a renewal period.
    pub async fn run<T, F: std::future::Future<Output = T>>(
        &mut self,
        work: impl FnOnce(u64) -> F,
    ) -> RedisResult<Held<T>> {
        let Some(token) = self.hold().await? else {
            return Ok(Held::Busy);
        };
        let work = work(token);
        let mut renewals = tokio::time::interval(self.ttl / 3);
        renewals.tick().await;
        tokio::pin!(work);
        let outcome = loop {
            tokio::select! {
                done = &mut work => break Held::Done(done),
                _ = renewals.tick() => match self.hold().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break Held::Lost,
                    // Redis is away: keep working while the lock may still be ours; the next
                    // renewal decides.
                    Err(error) => tracing::warn!(lock = %self.key, %error, "lock not renewed; retrying"),
                },
            }
        };
        if let Err(error) = self.release().await {
            tracing::warn!(lock = %self.key, %error, "lock not released; it expires by itself");
        }
        Ok(outcome)
    }
}
