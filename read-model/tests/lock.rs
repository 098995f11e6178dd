//! The singleton lock against a real Redis: one holder at a time, fencing tokens that grow
//! with every acquisition, renewal only by the holder, release on demand and on expiry.

use ordo_read_model::SingletonLock;
use ordo_testkit::TestPrefix;
use std::time::Duration;

#[tokio::test]
async fn one_holder_at_a_time_with_growing_fencing_tokens() {
    let prefix = TestPrefix::new().await;
    let ttl = Duration::from_secs(30);
    let lock = || SingletonLock::new(prefix.redis.clone(), &prefix.prefix, "job", ttl);
    let (mut first, mut second) = (lock(), lock());

    let token = first.hold().await.unwrap().expect("a free lock is taken");
    assert_eq!(second.hold().await.unwrap(), None, "held by the first");
    assert_eq!(
        first.hold().await.unwrap(),
        Some(token),
        "renewed, same token"
    );

    first.release().await.unwrap();
    let next = second.hold().await.unwrap().expect("released, so free");
    assert!(next > token, "fencing tokens grow: {next} after {token}");
    assert_eq!(first.hold().await.unwrap(), None, "held by the second now");
}

#[tokio::test]
async fn an_expired_holder_finds_out_and_the_lock_passes_on() {
    let prefix = TestPrefix::new().await;
    let short = Duration::from_millis(200);
    let mut paused = SingletonLock::new(prefix.redis.clone(), &prefix.prefix, "job", short);
    let mut other = SingletonLock::new(prefix.redis.clone(), &prefix.prefix, "job", short);
    let token = paused.hold().await.unwrap().expect("taken");
    // The holder pauses past its expiry; another process takes the lock meanwhile.
    tokio::time::sleep(short * 2).await;
    let taken = other.hold().await.unwrap().expect("expired, so free");
    assert!(taken > token);
    // The paused holder's renewal fails instead of acting beside the new holder.
    assert_eq!(paused.hold().await.unwrap(), None);
    assert_eq!(other.hold().await.unwrap(), Some(taken));
}
