//! The completeness marker of a namespace and the live state claims and the projector read.

use ordo_read_model::namespace::{self, ModelState};
use ordo_read_model::{keys, SingletonLock};
use ordo_testkit::TestPrefix;
use redis::AsyncCommands;
use std::time::Duration;

#[tokio::test]
async fn a_namespace_is_complete_only_with_its_marker() {
    let prefix = TestPrefix::new().await;
    let mut redis = prefix.redis.clone();
    let state = |live: namespace::Live| live.state;
    let live = namespace::live(&mut redis, &prefix.prefix).await.unwrap();
    assert_eq!(
        live.namespace, prefix.prefix,
        "no pointer: the prefix is live"
    );
    assert_eq!(live.state, ModelState::Lost);

    namespace::mark(&mut redis, &prefix.prefix, 7, 42)
        .await
        .unwrap();
    let marker: Vec<(String, String)> = redis.hgetall(keys::marker(&prefix.prefix)).await.unwrap();
    assert!(marker.contains(&("epoch".into(), "7".into())), "{marker:?}");
    assert!(
        marker.contains(&("events".into(), "42".into())),
        "{marker:?}"
    );
    let live = namespace::live(&mut redis, &prefix.prefix).await.unwrap();
    assert_eq!(state(live), ModelState::Complete);

    // A switch to a namespace without its marker yet, while a rebuild holds the lock.
    let blue = format!("{}.blue", prefix.prefix);
    namespace::switch(&mut redis, &prefix.prefix, &blue)
        .await
        .unwrap();
    let mut lock = SingletonLock::new(
        redis.clone(),
        &prefix.prefix,
        keys::REBUILD_LOCK,
        Duration::from_secs(5),
    );
    lock.hold().await.unwrap().expect("free");
    let live = namespace::live(&mut redis, &prefix.prefix).await.unwrap();
    assert_eq!(
        (live.namespace.as_str(), live.state),
        (blue.as_str(), ModelState::Rebuilding)
    );
    lock.release().await.unwrap();
    assert_eq!(
        state(namespace::live(&mut redis, &prefix.prefix).await.unwrap()),
        ModelState::Lost
    );
    namespace::mark(&mut redis, &blue, 8, 0).await.unwrap();
    assert_eq!(
        state(namespace::live(&mut redis, &prefix.prefix).await.unwrap()),
        ModelState::Complete
    );
    namespace::unmark(&mut redis, &blue).await.unwrap();
    assert_eq!(
        state(namespace::live(&mut redis, &prefix.prefix).await.unwrap()),
        ModelState::Lost
    );
}

#[tokio::test]
async fn deleting_a_namespace_named_like_the_prefix_spares_the_pointer_and_the_locks() {
    let prefix = TestPrefix::new().await;
    let mut redis = prefix.redis.clone();
    let ns = prefix.prefix.as_str();
    let mut lock = SingletonLock::new(redis.clone(), ns, "reaper", Duration::from_secs(5));
    lock.hold().await.unwrap().expect("free");
    let _: () = redis.set(keys::active_pointer(ns), ns).await.unwrap();
    namespace::mark(&mut redis, ns, 1, 0).await.unwrap();
    let _: () = redis.set(keys::job(ns, "j"), "x").await.unwrap();

    assert_eq!(
        namespace::delete(&mut redis, ns).await.unwrap(),
        2,
        "the job and the marker"
    );
    assert!(redis
        .exists::<_, bool>(keys::active_pointer(ns))
        .await
        .unwrap());
    assert!(redis
        .exists::<_, bool>(keys::lock(ns, "reaper"))
        .await
        .unwrap());
    assert!(!namespace::has_keys(&mut redis, ns).await.unwrap());
}

#[tokio::test]
async fn work_under_the_lock_runs_once_at_a_time_and_releases_it() {
    let prefix = TestPrefix::new().await;
    let lock = || {
        SingletonLock::new(
            prefix.redis.clone(),
            &prefix.prefix,
            "rebuild",
            Duration::from_millis(300),
        )
    };
    let (mut first, mut second) = (lock(), lock());
    let outcome = first
        .run(|token| async move {
            // Outlives the TTL: renewals keep the lock, so the second finds it held.
            tokio::time::sleep(Duration::from_millis(700)).await;
            let busy = second.run(|_| async {}).await.unwrap();
            (token, matches!(busy, ordo_read_model::lock::Held::Busy))
        })
        .await
        .unwrap();
    let ordo_read_model::lock::Held::Done((token, busy)) = outcome else {
        panic!("the work ran to its end: {outcome:?}");
    };
    assert!(token > 0 && busy);
    assert!(
        matches!(
            lock().run(|_| async {}).await.unwrap(),
            ordo_read_model::lock::Held::Done(())
        ),
        "released"
    );
}
