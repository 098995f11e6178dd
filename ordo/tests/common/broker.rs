//! A private Kafka-protocol broker (Nisshi, memory storage) per test, which the test may pause,
//! resume, kill and restart, and a reader that counts the event ids of one topic on any broker.

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Headers, Message};
use std::collections::{HashMap, HashSet};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`...) to `pid` with the `kill` command.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// The `nisshi` binary `scripts/services.sh` installs: on `PATH`, or in `~/.cargo/bin`.
pub fn nisshi_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("nisshi"));
    let in_cargo_home = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cargo/bin/nisshi"))
        .into_iter();
    on_path
        .chain(in_cargo_home)
        .find(|candidate| candidate.is_file())
        .expect("the nisshi broker is not installed (not on PATH nor in ~/.cargo/bin): run `make services`")
}

/// `nisshi broker` with memory storage on a loopback port, killed when dropped. Its state
/// (topics, records) lives only as long as the process.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
}

impl Broker {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts a broker on `port` (a fresh, empty one after [`Broker::kill`]).
    pub fn start_on(port: u16) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(nisshi_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://nisshi/", "--silent"])
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nisshi broker");
        let mut broker = Self {
            child: Some(child),
            port,
        };
        broker.wait_listening();
        broker
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let address = ("127.0.0.1", self.port);
        while TcpStream::connect(address).is_err() {
            let child = self.child.as_mut().expect("broker running");
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nisshi on port {} exited at start: {status}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "nisshi not listening on 127.0.0.1:{} after 30 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker running").id()
    }

    /// SIGSTOP: the broker keeps its sockets and state but answers nothing.
    pub fn pause(&self) {
        send_signal(self.pid(), "STOP");
    }

    /// SIGCONT after [`Broker::pause`].
    pub fn resume(&self) {
        send_signal(self.pid(), "CONT");
    }

    /// SIGKILL: the broker and everything it stored are gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        self.kill();
    }
}

/// Reads one topic from the beginning, on every partition, and counts the records per event id
/// (the `id` header). Reading is incremental: each call continues where the last one stopped.
/// Blocking; call it from `spawn_blocking`.
pub struct TopicReader {
    consumer: BaseConsumer,
    pub topic: String,
    /// Records read, duplicates included.
    pub records: usize,
    /// Records read per event id.
    pub seen: HashMap<Uuid, u32>,
    /// Next offset expected per partition; a record at another offset is a gap (or a step
    /// back), kept in `jumps` as (partition, expected, got).
    next_offset: HashMap<i32, i64>,
    pub jumps: Vec<(i32, i64, i64)>,
}

impl TopicReader {
    /// Reads `topic` on `brokers` from the beginning (see `ordo_testkit::kafka::assigned_consumer`).
    pub fn open(brokers: &str, topic: &str, timeout: Duration) -> Self {
        let consumer = ordo_testkit::kafka::assigned_consumer(brokers, topic, timeout);
        Self {
            consumer,
            topic: topic.to_owned(),
            records: 0,
            seen: HashMap::new(),
            next_offset: HashMap::new(),
            jumps: Vec::new(),
        }
    }

    /// Distinct event ids read so far.
    pub fn distinct(&self) -> usize {
        self.seen.len()
    }

    /// Records read more than once: `records − distinct`.
    pub fn duplicates(&self) -> usize {
        self.records - self.seen.len()
    }

    fn poll_one(&mut self) -> Option<Uuid> {
        match self.consumer.poll(Duration::from_millis(100))? {
            Ok(message) => {
                let id = message
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "id"))
                    .and_then(|h| h.value)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| Uuid::parse_str(v).ok())
                    .expect("every record has an id header");
                let (partition, offset) = (message.partition(), message.offset());
                let expected = self.next_offset.insert(partition, offset + 1).unwrap_or(0);
                if offset != expected {
                    self.jumps.push((partition, expected, offset));
                }
                self.records += 1;
                *self.seen.entry(id).or_default() += 1;
                Some(id)
            }
            Err(e) => {
                // A broker that is away shows here; the consumer reconnects by itself.
                eprintln!("reader of {}: {e}", self.topic);
                None
            }
        }
    }

    /// Reads until at least `count` distinct ids were seen or `timeout` passed; returns whether
    /// the count was reached.
    pub fn read_distinct(&mut self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.seen.len() < count && Instant::now() < deadline {
            self.poll_one();
        }
        self.seen.len() >= count
    }

    /// Reads until every id of `ids` was seen or `timeout` passed; returns the ids still
    /// missing (empty on success).
    pub fn read_all(&mut self, ids: &[Uuid], timeout: Duration) -> Vec<Uuid> {
        let mut missing: HashSet<Uuid> = ids
            .iter()
            .filter(|id| !self.seen.contains_key(id))
            .copied()
            .collect();
        let deadline = Instant::now() + timeout;
        while !missing.is_empty() && Instant::now() < deadline {
            if let Some(id) = self.poll_one() {
                missing.remove(&id);
            }
        }
        ids.iter()
            .filter(|id| missing.contains(id))
            .copied()
            .collect()
    }

    /// Reads whatever else arrives within `quiet` of the last record (late duplicates).
    pub fn drain(&mut self, quiet: Duration) {
        let mut last = Instant::now();
        while last.elapsed() < quiet {
            if self.poll_one().is_some() {
                last = Instant::now();
            }
        }
    }
}
