//! The ingest role as the tests run it: its routes on an ephemeral port, producing to a topic
//! of the test's own on the local broker, its rate limits under a Redis key prefix of the
//! test's own; records read back with a plain consumer, as the logs store will read them.
#![allow(dead_code)] // each test binary uses a different subset

use ordo_common::http::{finish, render_metrics, HttpMetrics};
use ordo_common::logs::{LogMetrics, LogSink};
use ordo_ingest::{IngestConfig, IngestService, TenantLimits};
use ordo_protocol::logs::LogBatch;
use ordo_testkit::http::{client, serve};
use ordo_testkit::kafka::read_topic;
use ordo_testkit::stack::{kafka_brokers, unique};
use ordo_testkit::TestPrefix;
use prometheus::Registry;
use std::sync::Arc;
use std::time::Duration;

pub const NO_LIMITS: TenantLimits = TenantLimits {
    lines_per_sec: 0,
    lines_burst: 0,
    bytes_per_sec: 0,
    bytes_burst: 0,
};

/// One ingest server of the test's own.
pub struct Ingest {
    pub url: String,
    pub topic: String,
    /// Shared by the instances [`Ingest::beside`] starts.
    pub prefix: Arc<TestPrefix>,
    pub registry: Registry,
    pub http: reqwest::Client,
}

impl Ingest {
    /// Without rate limits.
    pub async fn start() -> Self {
        Self::start_with(IngestConfig {
            limits: NO_LIMITS,
            ..IngestConfig::default()
        })
        .await
    }

    pub async fn start_with(config: IngestConfig) -> Self {
        let topic = unique("ordo.logs.test-");
        Self::on(&topic, Arc::new(TestPrefix::new().await), config).await
    }

    /// Another instance on the same topic and Redis prefix (limits hold across instances).
    pub async fn beside(&self, config: IngestConfig) -> Self {
        Self::on(&self.topic, self.prefix.clone(), config).await
    }

    async fn on(topic: &str, prefix: Arc<TestPrefix>, config: IngestConfig) -> Self {
        // One partition: the tests read records in the order they were produced.
        let sink = LogSink::connect(&kafka_brokers(), topic, 1)
            .await
            .expect("the broker of the local stack is reachable (run `make services`)");
        let registry = Registry::new();
        let service = IngestService::new(
            sink,
            prefix.redis.clone(),
            &prefix.prefix,
            LogMetrics::register(&registry).expect("a new registry"),
            config,
        );
        let app = finish(
            ordo_ingest::routes(service),
            HttpMetrics::register(&registry).expect("a new registry"),
        );
        let (url, _server) = serve(app).await;
        Self {
            url,
            topic: topic.to_owned(),
            prefix,
            registry,
            http: client(),
        }
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.url))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.url))
    }

    /// The records of the topic, read from the beginning until they hold `lines` lines
    /// (panics after 20 s): (key, decoded batch).
    pub async fn batches(&self, lines: usize) -> Vec<(String, LogBatch)> {
        let topic = self.topic.clone();
        let records = tokio::task::spawn_blocking(move || {
            read_topic(&topic, Duration::from_secs(20), |records| {
                count(&decode(records)) >= lines
            })
        })
        .await
        .expect("reader");
        let batches = decode(&records);
        assert_eq!(
            count(&batches),
            lines,
            "lines on {}: {batches:#?}",
            self.topic
        );
        batches
    }

    /// The lines of every record, in order.
    pub async fn lines(&self, lines: usize) -> Vec<ordo_protocol::logs::LogEntry> {
        self.batches(lines)
            .await
            .into_iter()
            .flat_map(|(_, b)| b.lines)
            .collect()
    }

    pub fn metrics(&self) -> String {
        render_metrics(&self.registry)
    }
}

fn decode(records: &[ordo_testkit::kafka::Consumed]) -> Vec<(String, LogBatch)> {
    records
        .iter()
        .map(|r| {
            let key = String::from_utf8(r.key.clone().expect("keyed")).expect("UTF-8 key");
            let batch = LogBatch::decode(r.value.as_deref().expect("a value")).expect("v2");
            (key, batch)
        })
        .collect()
}

fn count(batches: &[(String, LogBatch)]) -> usize {
    batches.iter().map(|(_, b)| b.lines.len()).sum()
}
