//! Fault tests of `ordo serve relay` as a real process against real services, no mocks: the
//! relay killed with SIGKILL mid-stream, its broker frozen (SIGSTOP) or lost (SIGKILL and a
//! fresh, empty one), its PostgreSQL stopped and started again. Each test has its own
//! database, slot and topic; the broker and PostgreSQL faults run on a broker and a cluster
//! of their own, so the shared local stack is never disturbed.
//!
//! Delivery is at least once: every committed event id must reach Kafka; duplicates are
//! allowed and counted.

mod common;

use common::broker::TopicReader;
use common::*;
use ordo::instances::broker::Broker;
use ordo::instances::postgres::PrivateCluster;
use ordo_common::db::{self, DbConfig};
use sqlx::PgPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Rows per inserting transaction in the outage tests, and the pause between transactions:
/// a steady ~400 events/s that keeps flowing through every fault.
const TRICKLE_BATCH: usize = 20;
const TRICKLE_PAUSE: Duration = Duration::from_millis(50);

/// How long a relay may take to start streaming its slot.
const SLOT_WAIT: Duration = Duration::from_secs(60);

/// How long the relay gets to deliver what it owes once a fault is over.
const CATCH_UP: Duration = Duration::from_secs(90);

async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}

/// Inserts outbox rows from a background task, one transaction of `batch` rows at a time, and
/// remembers the ids of every committed row in commit order. A failed transaction (the
/// database is down) is retried with the same rows until it commits, so every row it
/// generates ends up committed exactly once.
struct Inserter {
    committed: Arc<Mutex<Vec<Uuid>>>,
    failed_attempts: Arc<AtomicU64>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Inserter {
    /// Inserts until `total` rows are committed, or until [`Inserter::stop`] when `None`.
    fn spawn(pool: PgPool, batch: usize, pause: Duration, total: Option<usize>) -> Self {
        let committed = Arc::new(Mutex::new(Vec::new()));
        let failed_attempts = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (committed, failed_attempts, stop) =
                (committed.clone(), failed_attempts.clone(), stop.clone());
            async move {
                let mut inserted = 0;
                while !stop.is_cancelled() && total.is_none_or(|total| inserted < total) {
                    let rows = sample_rows(batch, 5);
                    insert_retrying(&pool, &rows, &failed_attempts).await;
                    committed.lock().unwrap().extend(rows.iter().map(|r| r.id));
                    inserted += rows.len();
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        });
        Self {
            committed,
            failed_attempts,
            stop,
            task,
        }
    }

    /// Rows committed so far.
    fn count(&self) -> usize {
        self.committed.lock().unwrap().len()
    }

    /// The ids committed so far, in commit order.
    fn snapshot(&self) -> Vec<Uuid> {
        self.committed.lock().unwrap().clone()
    }

    fn failed_attempts(&self) -> u64 {
        self.failed_attempts.load(Ordering::Relaxed)
    }

    /// Stops after the transaction in progress; returns every committed id.
    async fn stop(self) -> Vec<Uuid> {
        self.stop.cancel();
        self.join().await
    }

    /// Waits until the inserter is done; returns every committed id.
    async fn join(self) -> Vec<Uuid> {
        let committed = self.committed.clone();
        self.task.await.expect("inserter task");
        let ids = committed.lock().unwrap().clone();
        ids
    }
}

async fn insert_retrying(pool: &PgPool, rows: &[OutboxRow], failed_attempts: &AtomicU64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match try_insert_outbox(pool, rows).await {
            Ok(()) => return,
            // An earlier attempt committed although its answer was lost.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => return,
            Err(e) => {
                let n = failed_attempts.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_multiple_of(20) {
                    eprintln!("outbox insert failed (attempt {n} in all), retrying: {e}");
                }
                assert!(
                    Instant::now() < deadline,
                    "outbox insert kept failing for 90 s: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Opens a reader of `topic` on `brokers` (waiting for the relay to create it) and reads
/// until `count` distinct ids arrived: proof that records flow.
async fn read_flowing(brokers: &str, topic: &str, count: usize) -> TopicReader {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    blocking(move || {
        let mut reader = TopicReader::open(&brokers, &topic, Duration::from_secs(60));
        assert!(
            reader.read_distinct(count, Duration::from_secs(60)),
            "only {} records reached {topic} within 60 s",
            reader.distinct()
        );
        reader
    })
    .await
}

/// Reads until every id of `ids` arrived (or [`CATCH_UP`] passed); returns the reader and
/// the ids still missing.
async fn read_all(mut reader: TopicReader, ids: Vec<Uuid>) -> (TopicReader, Vec<Uuid>) {
    blocking(move || {
        let missing = reader.read_all(&ids, CATCH_UP);
        (reader, missing)
    })
    .await
}

/// One test's relay set-up: its database, broker, slot and topic.
struct Run<'a> {
    pool: &'a PgPool,
    url: &'a str,
    brokers: &'a str,
    slot: String,
    template: String,
    topic: String,
}

impl<'a> Run<'a> {
    fn new(pool: &'a PgPool, url: &'a str, brokers: &'a str) -> Self {
        let prefix = unique("t");
        Self {
            pool,
            url,
            brokers,
            slot: unique("ordo_t_"),
            template: topic_template(&prefix),
            topic: format!("{prefix}.outbox.event.job"),
        }
    }

    /// A relay process on the run's slot, once it streams.
    async fn relay(&self) -> RelayProcess {
        let relay = RelayProcess::spawn(self.url, self.brokers, &self.slot, &self.template);
        wait_slot_streaming(self.pool, &self.slot, SLOT_WAIT).await;
        relay
    }
}

/// Panics if ids are missing, with what is known about them: whether their rows are still in
/// the outbox (the relay deletes a row once Kafka acknowledged it, unless it died first),
/// whether a fresh reader finds them on the broker, and the offset jumps the test's reader saw.
async fn assert_none_missing(
    run: &Run<'_>,
    reader: &TopicReader,
    missing: &[Uuid],
    expected: usize,
    what: &str,
) {
    if missing.is_empty() {
        return;
    }
    let unacknowledged: Result<i64, _> =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE id = ANY($1)")
            .bind(missing)
            .fetch_one(run.pool)
            .await;
    let (brokers, topic, ids) = (run.brokers.to_owned(), run.topic.clone(), missing.to_vec());
    let (fresh_missing, fresh_records) = blocking(move || {
        let mut fresh = TopicReader::open(&brokers, &topic, Duration::from_secs(10));
        let still = fresh.read_all(&ids, Duration::from_secs(10));
        (still.len(), fresh.records)
    })
    .await;
    panic!(
        "{} of {expected} {what} never reached Kafka (first: {:?}); {unacknowledged:?} of them \
         still in the outbox; a fresh reader read {fresh_records} records \
         and still misses {fresh_missing} of them; offset jumps seen by the test's reader \
         (partition, expected, got): {:?}",
        missing.len(),
        &missing[..missing.len().min(5)],
        &reader.jumps[..reader.jumps.len().min(20)],
    );
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// SIGKILL of the relay in the middle of a 50,000-event stream; a new relay on the same slot
/// resumes from the last position acknowledged to PostgreSQL. Nothing is lost; what the dead
/// relay produced but had not acknowledged is produced again (counted duplicates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_stream_loses_nothing() {
    const EVENTS: usize = 50_000;
    let started = Instant::now();
    let db = TestDb::new().await;
    let brokers = kafka_brokers();
    let run = Run::new(&db.pool, &db.url, &brokers);

    let relay = run.relay().await;
    let inserter = Inserter::spawn(db.pool.clone(), 100, Duration::ZERO, Some(EVENTS));

    let reader = read_flowing(&brokers, &run.topic, 5_000).await;
    let (inserted_at_kill, read_at_kill) = (inserter.count(), reader.distinct());
    relay.kill_hard();
    let killed_at = Instant::now();
    eprintln!(
        "kill -9 of the relay after {}: {inserted_at_kill} rows committed, \
         {read_at_kill} distinct records read from Kafka",
        secs(started.elapsed())
    );
    assert!(
        read_at_kill < EVENTS,
        "the relay must be killed mid-stream, not after it relayed everything"
    );

    // Rows keep arriving while no relay runs; then a new one takes the slot over.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut relay = RelayProcess::spawn(&db.url, &brokers, &run.slot, &run.template);
    let restarted_at = Instant::now();
    let ids = inserter.join().await;
    assert_eq!(ids.len(), EVENTS);

    let (mut reader, missing) = read_all(reader, ids.clone()).await;
    let (caught_up, since_kill) = (restarted_at.elapsed(), killed_at.elapsed());
    assert_none_missing(&run, &reader, &missing, EVENTS, "event ids").await;
    // Late copies of records the dead relay had produced but not acknowledged.
    let reader = blocking(move || {
        reader.drain(Duration::from_secs(2));
        reader
    })
    .await;

    let expected: std::collections::HashSet<Uuid> = ids.iter().copied().collect();
    assert!(
        reader.seen.keys().all(|id| expected.contains(id)),
        "the topic holds ids that were never inserted"
    );
    let max_copies = reader.seen.values().copied().max().unwrap_or(0);
    eprintln!(
        "kill -9: all {EVENTS} event ids in Kafka; {} records read, {} duplicates \
         (at most {max_copies} copies of one id); second relay caught up {} after its start \
         ({} after the kill); test took {}",
        reader.records,
        reader.duplicates(),
        secs(caught_up),
        secs(since_kill),
        secs(started.elapsed()),
    );
    relay.assert_running();
}

/// The broker frozen with SIGSTOP for 10 s while rows keep coming, then resumed with SIGCONT:
/// the same relay process delivers every row inserted before, during and after the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_rides_out_a_stopped_broker() {
    let started = Instant::now();
    let broker = Broker::start().expect("private broker");
    let brokers = broker.address();
    let db = TestDb::new().await;
    let run = Run::new(&db.pool, &db.url, &brokers);

    let mut relay = run.relay().await;
    let inserter = Inserter::spawn(db.pool.clone(), TRICKLE_BATCH, TRICKLE_PAUSE, None);
    let reader = read_flowing(&brokers, &run.topic, 200).await;

    let before = inserter.count();
    broker.pause().expect("SIGSTOP the broker");
    eprintln!(
        "broker on {brokers} stopped (SIGSTOP) after {} rows",
        before
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = inserter.count() - before;
    broker.resume().expect("SIGCONT the broker");
    let resumed_at = Instant::now();
    assert!(
        during > 0,
        "rows must keep coming while the broker is stopped"
    );

    // Everything inserted before and during the stop arrives, without any help.
    let up_to_resume = inserter.snapshot();
    let (reader, missing) = read_all(reader, up_to_resume.clone()).await;
    let caught_up = resumed_at.elapsed();
    assert_none_missing(
        &run,
        &reader,
        &missing,
        up_to_resume.len(),
        "ids inserted before or during the stop",
    )
    .await;

    // And rows keep flowing after it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids = inserter.stop().await;
    let (reader, missing) = read_all(reader, ids.clone()).await;
    assert_none_missing(&run, &reader, &missing, ids.len(), "event ids").await;
    relay.assert_running();
    eprintln!(
        "broker SIGSTOP 10 s: {} rows in all ({before} before, {during} during the stop, {} after); \
         relay caught up {} after SIGCONT; {} records read, {} duplicates; test took {}",
        ids.len(),
        ids.len() - up_to_resume.len(),
        secs(caught_up),
        reader.records,
        reader.duplicates(),
        secs(started.elapsed()),
    );
}

/// The broker killed outright and a fresh, empty one (memory storage) started on the same
/// port 10 s later: the relay re-creates its topic and delivers every row that no live broker
/// ever acknowledged, i.e. every row committed after the kill, by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_recovers_from_a_lost_broker() {
    let started = Instant::now();
    let mut broker = Broker::start().expect("private broker");
    let port = broker.port;
    let brokers = broker.address();
    let db = TestDb::new().await;
    let run = Run::new(&db.pool, &db.url, &brokers);

    let mut relay = run.relay().await;
    let inserter = Inserter::spawn(db.pool.clone(), TRICKLE_BATCH, TRICKLE_PAUSE, None);
    drop(read_flowing(&brokers, &run.topic, 200).await);

    broker.kill();
    // The transaction in flight at the kill may have been relayed to the dead broker; every
    // one after it was committed after the broker was gone.
    let after_kill = inserter.count() + TRICKLE_BATCH;
    eprintln!("broker on {brokers} killed (SIGKILL) after {after_kill} rows");
    tokio::time::sleep(Duration::from_secs(10)).await;
    drop(broker);
    let _broker = Broker::start_on(port, None).expect("a fresh broker on the same port");
    let up_at = Instant::now();
    let after_up = inserter.count();
    assert!(
        after_up > after_kill,
        "rows must keep coming while the broker is down"
    );

    // The relay re-creates its topic on the new broker...
    let reader = {
        let (brokers, topic) = (brokers.clone(), run.topic.clone());
        blocking(move || TopicReader::open(&brokers, &topic, CATCH_UP)).await
    };
    let topic_back = up_at.elapsed();
    // ...and delivers what it owed from the outage...
    let owed = inserter.snapshot()[after_kill..after_up].to_vec();
    let (reader, missing) = read_all(reader, owed.clone()).await;
    let caught_up = up_at.elapsed();
    assert_none_missing(
        &run,
        &reader,
        &missing,
        owed.len(),
        "ids inserted while the broker was down",
    )
    .await;

    // ...and everything after.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids = inserter.stop().await;
    let new = ids[after_up..].to_vec();
    let (reader, missing) = read_all(reader, new.clone()).await;
    assert_none_missing(
        &run,
        &reader,
        &missing,
        new.len(),
        "ids inserted after the new broker was up",
    )
    .await;
    relay.assert_running();
    let resent = ids[..after_kill]
        .iter()
        .filter(|id| reader.seen.contains_key(id))
        .count();
    eprintln!(
        "broker SIGKILL + fresh broker 10 s later: topic re-created {} after the new broker \
         was up, the {} rows of the outage delivered {} after it, then {} more rows; \
         {resent} rows from before the kill produced again; {} records on the new broker, \
         {} duplicates; test took {}",
        secs(topic_back),
        owed.len(),
        secs(caught_up),
        new.len(),
        reader.records,
        reader.duplicates(),
        secs(started.elapsed()),
    );
}

/// A private PostgreSQL cluster stopped (fast shutdown), left down for 3 s and started again
/// while rows keep coming (inserts fail and are retried during the outage): the same relay
/// process reconnects and delivers every committed row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_recovers_from_a_postgres_restart() {
    let started = Instant::now();
    let cluster = tokio::task::block_in_place(PrivateCluster::start).expect("private cluster");
    let url = db::scratch_database(&cluster.url("postgres"), "ordo_relay_faults")
        .await
        .expect("scratch database on the private cluster");
    let pool = db::connect(&DbConfig::new(url.clone())).expect("pool");
    let brokers = kafka_brokers();
    eprintln!(
        "private PostgreSQL on port {} in {} ready after {}",
        cluster.port,
        cluster.dir().display(),
        secs(started.elapsed())
    );

    let run = Run::new(&pool, &url, &brokers);

    let mut relay = run.relay().await;
    let inserter = Inserter::spawn(pool.clone(), TRICKLE_BATCH, TRICKLE_PAUSE, None);
    let reader = read_flowing(&brokers, &run.topic, 200).await;

    let before = inserter.count();
    tokio::task::block_in_place(|| cluster.stop_server()).expect("stop PostgreSQL");
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| cluster.start_server()).expect("start PostgreSQL");
    let up_at = Instant::now();
    eprintln!(
        "PostgreSQL stopped after {before} rows, down for {}",
        secs(up_at - down_at)
    );

    // The relay takes its slot back by itself...
    wait_slot_streaming(&pool, &run.slot, SLOT_WAIT).await;
    let reconnected = up_at.elapsed();
    // ...and delivers everything committed before the restart and while it came back...
    let up_to_now = inserter.snapshot();
    let (reader, missing) = read_all(reader, up_to_now.clone()).await;
    let caught_up = up_at.elapsed();
    assert_none_missing(
        &run,
        &reader,
        &missing,
        up_to_now.len(),
        "ids inserted before the restart",
    )
    .await;

    // ...and after it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failed_attempts = inserter.failed_attempts();
    let ids = inserter.stop().await;
    let (reader, missing) = read_all(reader, ids.clone()).await;
    assert_none_missing(&run, &reader, &missing, ids.len(), "event ids").await;
    assert!(
        ids.len() > up_to_now.len(),
        "rows must be inserted after the restart"
    );
    relay.assert_running();
    eprintln!(
        "PostgreSQL restart: {} rows in all ({before} before the stop); {failed_attempts} \
         insert attempts failed during the outage; relay streaming again {} after the start, \
         caught up {} after it; {} records read, {} duplicates; test took {}",
        ids.len(),
        secs(reconnected),
        secs(caught_up),
        reader.records,
        reader.duplicates(),
        secs(started.elapsed()),
    );

    drop(relay);
    pool.close().await;
    drop(cluster);
}
