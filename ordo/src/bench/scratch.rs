//! The whole platform in this process on scratch state, for the benchmarks that measure
//! across roles (`bench submit --read-back`, `bench e2e`): both APIs, the relay, the projector
//! and the reaper against a fresh database, a fresh Redis prefix and fresh topics, so runs
//! never see each other's jobs, served on an ephemeral port of 127.0.0.1.

use crate::cli::GlobalArgs;
use crate::serve::Platform;
use anyhow::Context;
use ordo_common::db;
use ordo_outbox_relay::RelayConfig;
use ordo_projectors::ProjectorConfig;
use ordo_query_api::QueryConfig;
use ordo_read_model::namespace;
use prometheus::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct ScratchPlatform {
    /// The settings of this run: the scratch database and Redis prefix in place of the
    /// configured ones.
    pub args: GlobalArgs,
    /// Where both APIs answer, `http://127.0.0.1:{port}`.
    pub base_url: String,
    platform: Platform,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl ScratchPlatform {
    /// (Re-)creates the database `database` on the configured server and starts every role
    /// against it.
    pub async fn start(args: &GlobalArgs, database: &str) -> anyhow::Result<Self> {
        let scratch_url = db::scratch_database(&args.database_url, database)
            .await
            .with_context(|| {
                format!("cannot create a scratch database on {}", args.database_url)
            })?;
        let run_id = Uuid::new_v4().simple().to_string();
        let args = GlobalArgs {
            database_url: scratch_url.clone(),
            redis_prefix: format!("ordo-bench-{run_id}"),
            logs_topic: format!("bench-{run_id}.ordo.logs"),
            ..args.clone()
        };
        let relay = RelayConfig {
            slot: format!("ordo_bench_{}", &run_id[..12]),
            topic_template: format!("bench-{run_id}.outbox.event.${{routedByValue}}"),
            ..RelayConfig::new(&scratch_url, &args.kafka_brokers)
        };
        let projector = ProjectorConfig {
            topic: format!("bench-{run_id}.outbox.event.job"),
            group: format!("ordo-bench-{run_id}"),
            topic_partitions: args.topic_partitions()?,
            ..ProjectorConfig::new("redis-views", &args.kafka_brokers, &args.redis_prefix)
        };
        let query = QueryConfig {
            prefix: args.redis_prefix.clone(),
            ..QueryConfig::default()
        };
        let shutdown = CancellationToken::new();
        let platform = Platform::start(
            &args,
            Some(relay),
            projector,
            query,
            ordo_ingest::IngestConfig::default(),
            &shutdown,
        )
        .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let server = axum::serve(listener, platform.router.clone())
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let server = tokio::spawn(async move { server.await });
        Ok(Self {
            args,
            base_url,
            platform,
            shutdown,
            server,
        })
    }

    /// The metrics of every role in this process.
    pub fn registry(&self) -> &Registry {
        &self.platform.registry
    }

    /// Stops every role and deletes the run's keys from Redis. The database stays, for the
    /// caller to read or drop.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server.await??;
        self.platform.stopped().await?;
        let mut redis = ordo_read_model::connect(&self.args.redis_url).await?;
        namespace::delete(&mut redis, &self.args.redis_prefix).await?;
        Ok(())
    }
}
