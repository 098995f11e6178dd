//! The command bus: the one place that runs the `Job` aggregate against the event store.
//!
//! It drives cqrs-es's `EventStore` directly instead of `CqrsFramework::execute`, because a
//! caller needs the job's new status and `sequence` back (read-your-writes on the query side),
//! and because a submit of a fresh job id can skip loading: the aggregate is known to be new and
//! a duplicate id shows up as a conflict on the events primary key anyway.
//!
//! The other commands start from the state the previous command left in [`crate::cache`], and
//! fall back to loading the job's events when that state turns out stale.

use crate::cache::{self, CachedJob, JobCache};
use crate::metrics::CommandMetrics;
use crate::store::{persistence_error, Appender, JobEventStore, OutboxEventRepository};
use crate::write_through::WriteThrough;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{
    EventStoreAggregateContext, PersistedEventRepository, PersistenceError, SerializedEvent,
};
use cqrs_es::{Aggregate, AggregateError, EventStore};
use ordo_domain::spec::{json_equivalent, TenantId};
use ordo_domain::{
    CommandMetadata, EventEnvelope, Job, JobCommand, JobError, JobEvent, JobServices, JobSpec,
    JobStatus,
};
use postgres_es::PostgresEventRepository;
use redis::aio::ConnectionManager;
use serde_json::Value;
use std::collections::{hash_map, HashMap};
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

pub use ordo_protocol::jobs::MAX_BATCH_JOBS;
/// Check-then-append rounds of a bulk submit: another round only when a concurrent submit
/// created one of its keyed jobs between the check and the append.
const BATCH_ROUNDS: usize = 3;

/// One job of a bulk submit.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub spec: JobSpec,
    pub idempotency_key: Option<String>,
}

/// Namespace of idempotent job ids: `uuid_v5(NAMESPACE, tenant + "\n" + key)`.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_646f_2d6a_6f62_2d69_6465_6d70_6f74);

/// What a successful command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    pub job_id: Uuid,
    pub status: JobStatus,
    /// The sequence of the job's last event: query endpoints can wait for it.
    pub sequence: u64,
    /// False when an idempotent submit found the job it had created before.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] JobError),
    #[error("the job was changed concurrently; reload and retry")]
    Conflict,
    #[error("Idempotency-Key was used before for a different job specification")]
    IdempotencyMismatch,
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    #[error("event store failure: {0}")]
    Internal(String),
}

impl From<AggregateError<JobError>> for CommandError {
    fn from(error: AggregateError<JobError>) -> Self {
        match error {
            AggregateError::UserError(e) => CommandError::Rejected(e),
            AggregateError::AggregateConflict => CommandError::Conflict,
            AggregateError::DatabaseConnectionError(e) => CommandError::Unavailable(e.to_string()),
            AggregateError::DeserializationError(e) | AggregateError::UnexpectedError(e) => {
                CommandError::Internal(e.to_string())
            }
        }
    }
}

impl CommandError {
    /// A bounded label for the commands metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            CommandError::Rejected(JobError::NotFound) => "not_found",
            CommandError::Rejected(_) | CommandError::IdempotencyMismatch => "rejected",
            CommandError::Conflict => "conflict",
            CommandError::Unavailable(_) | CommandError::Internal(_) => "error",
        }
    }
}

/// Equal specifications, with payloads compared as JSON values (see [`json_equivalent`]).
fn same_spec(stored: &JobSpec, requested: &JobSpec) -> bool {
    let without_payload = |spec: &JobSpec| JobSpec {
        payload: serde_json::Value::Null,
        ..spec.clone()
    };
    json_equivalent(&stored.payload, &requested.payload)
        && without_payload(stored) == without_payload(requested)
}

pub struct JobCommandBus {
    store: JobEventStore,
    /// Appends of bulk submits, through the same group commit as `store`'s.
    appender: Appender,
    pool: sqlx::PgPool,
    /// Plain postgres-es reads for the history endpoint, which needs the stored metadata.
    reads: PostgresEventRepository,
    services: JobServices,
    /// The state each command left behind, so the next one need not load it.
    cache: JobCache,
    metrics: CommandMetrics,
    /// Set once when the process has the read model at hand (the API roles).
    write_through: OnceLock<WriteThrough>,
}

impl JobCommandBus {
    pub fn new(pool: sqlx::PgPool, services: JobServices, metrics: CommandMetrics) -> Self {
        let repository = OutboxEventRepository::new(pool.clone());
        Self {
            appender: repository.appender(),
            store: repository.into_event_store(),
            reads: PostgresEventRepository::new(pool.clone()),
            pool,
            services,
            cache: JobCache::new(cache::DEFAULT_CAPACITY_BYTES),
            metrics,
            write_through: OnceLock::new(),
        }
    }

    /// From now on, writes the events of every command it commits into the read model under
    /// `prefix` of `redis` too (see [`crate::write_through`]). Set once; later calls change
    /// nothing.
    pub fn write_through_to(&self, redis: ConnectionManager, prefix: &str) {
        let write_through = WriteThrough::new(redis, prefix, self.metrics.write_through.clone());
        let _ = self.write_through.set(write_through);
    }

    /// The id a submit with `Idempotency-Key: key` gets: the same for the same tenant and key.
    pub fn idempotent_job_id(tenant: &TenantId, key: &str) -> Uuid {
        Uuid::new_v5(
            &IDEMPOTENCY_NAMESPACE,
            format!("{tenant}\n{key}").as_bytes(),
        )
    }

    /// Creates a job. With an idempotency key, a repeated submit answers with the job the first
    /// one created (`created: false`), provided the specification is the same.
    pub async fn submit(
        &self,
        spec: JobSpec,
        idempotency_key: Option<&str>,
        metadata: CommandMetadata,
    ) -> Result<CommandOutcome, CommandError> {
        let job_id = match idempotency_key {
            Some(key) => Self::idempotent_job_id(&spec.tenant, key),
            None => Uuid::now_v7(),
        };
        // Kept only when a repeat may have to be compared with the stored job.
        let expected = idempotency_key.map(|_| spec.clone());
        let context = EventStoreAggregateContext {
            aggregate_id: job_id.to_string(),
            aggregate: Job::default(),
            current_sequence: 0,
            current_snapshot: None,
        };
        let result = self
            .run(context, JobCommand::Submit(Box::new(spec)), metadata)
            .await
            .map(|(outcome, _)| outcome);
        let result = match result {
            Err(CommandError::Conflict) => match &expected {
                Some(expected) => self.existing(job_id, expected).await,
                None => Err(CommandError::Conflict),
            },
            other => other,
        };
        self.record("submit", &result);
        result
    }

    /// Creates many jobs with one append (one unit of the group commit), each job on its own:
    /// the answers come in the order of `jobs`. A job with an idempotency key that exists
    /// already answers like a repeated [`submit`](Self::submit) (`created: false`, or
    /// [`CommandError::IdempotencyMismatch`]); a key repeated within `jobs` creates one job,
    /// and its later occurrences answer as repeats of the first. The outer error (the store
    /// failed) means no job of the call was created.
    pub async fn submit_batch(
        &self,
        jobs: Vec<NewJob>,
        metadata: CommandMetadata,
    ) -> Result<Vec<Result<CommandOutcome, CommandError>>, CommandError> {
        let ids: Vec<Uuid> = jobs
            .iter()
            .map(|job| match &job.idempotency_key {
                Some(key) => Self::idempotent_job_id(&job.spec.tenant, key),
                None => Uuid::now_v7(),
            })
            .collect();
        let mut results: Vec<Option<Result<CommandOutcome, CommandError>>> =
            jobs.iter().map(|_| None).collect();
        // A key seen before in this batch: (its index, the index of its first occurrence).
        let mut first_of = HashMap::new();
        let mut repeats = Vec::new();
        let mut pending = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            if job.idempotency_key.is_none() {
                pending.push(i);
                continue;
            }
            match first_of.entry(ids[i]) {
                hash_map::Entry::Occupied(first) => repeats.push((i, *first.get())),
                hash_map::Entry::Vacant(slot) => {
                    slot.insert(i);
                    pending.push(i);
                }
            }
        }
        let written = self
            .append_new(&jobs, &ids, &mut pending, &mut results, metadata)
            .await;
        if let Err(e) = written {
            for _ in &jobs {
                self.metrics.record_command("submit", e.outcome());
            }
            return Err(e);
        }
        for (i, first) in repeats {
            let answer = match &results[first] {
                // Created by this batch: a repeat of the first occurrence.
                Some(Ok(outcome)) if outcome.created => {
                    if same_spec(&jobs[first].spec, &jobs[i].spec) {
                        Ok(CommandOutcome {
                            created: false,
                            ..outcome.clone()
                        })
                    } else {
                        Err(CommandError::IdempotencyMismatch)
                    }
                }
                // Found in the store (or refused): compared with the stored job like the first.
                _ => self.existing(ids[i], &jobs[i].spec).await,
            };
            results[i] = Some(answer);
        }
        Ok(results
            .into_iter()
            .map(|result| {
                let result = result.unwrap_or_else(|| {
                    Err(CommandError::Internal(
                        "a job of the batch got no answer".into(),
                    ))
                });
                self.record("submit", &result);
                result
            })
            .collect())
    }

    /// Appends the jobs of `pending` (indexes into `jobs` and `ids`) as one unit, after
    /// answering those whose idempotent id exists already; fills `results` for every index of
    /// `pending`.
    async fn append_new(
        &self,
        jobs: &[NewJob],
        ids: &[Uuid],
        pending: &mut Vec<usize>,
        results: &mut [Option<Result<CommandOutcome, CommandError>>],
        metadata: CommandMetadata,
    ) -> Result<(), CommandError> {
        let (tenant, occurred_at) = (metadata.tenant.clone(), metadata.occurred_at);
        let metadata = metadata.into_map();
        for round in 1..=BATCH_ROUNDS {
            let keyed: Vec<String> = pending
                .iter()
                .filter(|&&i| jobs[i].idempotency_key.is_some())
                .map(|&i| ids[i].to_string())
                .collect();
            if !keyed.is_empty() {
                // One query for all: a client that retries a whole batch finds every job.
                let existing = self.stored_jobs(&keyed).await?;
                for &i in pending.iter() {
                    if let Some((job, sequence)) = existing.get(&ids[i]) {
                        results[i] = Some(Self::repeat_of(ids[i], job, *sequence, &jobs[i].spec));
                    }
                }
                pending.retain(|i| !existing.contains_key(&ids[*i]));
            }
            let mut envelopes = Vec::with_capacity(pending.len());
            let mut created = Vec::with_capacity(pending.len());
            for &i in pending.iter() {
                match self.new_job(ids[i], &jobs[i].spec, &metadata).await {
                    Ok((job_envelopes, job)) => {
                        envelopes.extend(job_envelopes);
                        created.push((i, job));
                    }
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            let events = envelopes
                .iter()
                .map(SerializedEvent::try_from)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CommandError::Internal(e.to_string()))?;
            match self.appender.append(&events).await {
                Ok(()) => {
                    if let Some(write_through) = self.write_through.get() {
                        write_through.write_events(&tenant, occurred_at, events_of(&envelopes));
                    }
                    for (i, (sequence, job)) in created {
                        let status = job.status().ok_or(JobError::NotFound);
                        self.cache.put(ids[i], job, sequence);
                        results[i] =
                            Some(status.map_err(Into::into).map(|status| CommandOutcome {
                                job_id: ids[i],
                                status,
                                sequence: sequence as u64,
                                created: true,
                            }));
                    }
                    return Ok(());
                }
                // A concurrent submit created one of the keyed jobs: check the keys again.
                Err(PersistenceError::OptimisticLockError) if round < BATCH_ROUNDS => {}
                Err(e) => return Err(AggregateError::<JobError>::from(e).into()),
            }
        }
        Err(CommandError::Conflict)
    }

    /// The jobs among `ids` that exist already, as their events make them, with their last
    /// sequence: one query.
    async fn stored_jobs(
        &self,
        ids: &[String],
    ) -> Result<HashMap<Uuid, (Job, usize)>, CommandError> {
        let rows: Vec<(String, i64, String, String, Value, Value)> = sqlx::query_as(
            "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata \
             FROM events WHERE aggregate_type = $1 AND aggregate_id = ANY($2) \
             ORDER BY aggregate_id, sequence",
        )
        .bind(Job::TYPE)
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| AggregateError::<JobError>::from(persistence_error(e)))?;
        let mut jobs: HashMap<Uuid, (Job, usize)> = HashMap::new();
        for (aggregate_id, sequence, event_type, event_version, payload, metadata) in rows {
            let job_id: Uuid = aggregate_id
                .parse()
                .map_err(|e| CommandError::Internal(format!("job id {aggregate_id}: {e}")))?;
            let serialized = SerializedEvent::new(
                aggregate_id,
                sequence as usize,
                Job::TYPE.to_owned(),
                event_type,
                event_version,
                payload,
                metadata,
            );
            let envelope = cqrs_es::EventEnvelope::<Job>::try_from(serialized)
                .map_err(|e| CommandError::Internal(e.to_string()))?;
            let (job, last) = jobs.entry(job_id).or_default();
            job.apply(envelope.payload);
            *last = sequence as usize;
        }
        Ok(jobs)
    }

    /// The answer to a keyed submit of `spec` whose job exists already as `job`.
    fn repeat_of(
        job_id: Uuid,
        job: &Job,
        sequence: usize,
        spec: &JobSpec,
    ) -> Result<CommandOutcome, CommandError> {
        if !job.spec().is_some_and(|stored| same_spec(stored, spec)) {
            return Err(CommandError::IdempotencyMismatch);
        }
        Ok(CommandOutcome {
            job_id,
            status: job.status().ok_or(JobError::NotFound)?,
            sequence: sequence as u64,
            created: false,
        })
    }

    /// The events of a fresh job `job_id` submitted with `spec`, its last sequence and its
    /// state.
    async fn new_job(
        &self,
        job_id: Uuid,
        spec: &JobSpec,
        metadata: &HashMap<String, String>,
    ) -> Result<(Vec<cqrs_es::EventEnvelope<Job>>, (usize, Job)), CommandError> {
        let mut job = Job::default();
        let sink = EventSink::default();
        job.handle(
            JobCommand::Submit(Box::new(spec.clone())),
            &self.services,
            &sink,
        )
        .await
        .map_err(CommandError::Rejected)?;
        let aggregate_id = job_id.to_string();
        let envelopes: Vec<_> = sink
            .collect()
            .await
            .into_iter()
            .zip(1..)
            .map(|(payload, sequence)| cqrs_es::EventEnvelope::<Job> {
                aggregate_id: aggregate_id.clone(),
                sequence,
                payload,
                metadata: metadata.clone(),
            })
            .collect();
        let sequence = envelopes.len();
        Ok((envelopes, (sequence, job)))
    }

    async fn existing(
        &self,
        job_id: Uuid,
        expected: &JobSpec,
    ) -> Result<CommandOutcome, CommandError> {
        let context = self.load_stored(job_id, &expected.tenant).await?;
        if !context
            .aggregate
            .spec()
            .is_some_and(|stored| same_spec(stored, expected))
        {
            return Err(CommandError::IdempotencyMismatch);
        }
        Ok(CommandOutcome {
            job_id,
            status: context.aggregate.status().ok_or(JobError::NotFound)?,
            sequence: context.current_sequence as u64,
            created: false,
        })
    }

    /// Runs any command but submit against an existing job of `tenant`.
    pub async fn execute(
        &self,
        job_id: Uuid,
        tenant: &TenantId,
        command: JobCommand,
        metadata: CommandMetadata,
    ) -> Result<CommandOutcome, CommandError> {
        let name = command.name();
        let result = self
            .load_and_run(job_id, tenant, command, metadata)
            .await
            .map(|(outcome, _)| outcome);
        self.record(name, &result);
        result
    }

    /// A worker's claim: runs `Start` and answers with the job's specification too, which
    /// carries the payload the worker needs (the read model does not hold payloads).
    pub async fn start(
        &self,
        job_id: Uuid,
        tenant: &TenantId,
        command: JobCommand,
        metadata: CommandMetadata,
    ) -> Result<(CommandOutcome, JobSpec), CommandError> {
        let result = match self.load_and_run(job_id, tenant, command, metadata).await {
            Ok((outcome, job)) => match job.job.spec() {
                Some(spec) => Ok((outcome, spec.clone())),
                None => Err(JobError::NotFound.into()),
            },
            Err(e) => Err(e),
        };
        self.record("start", &result);
        result
    }

    /// The job of `tenant` as its events make it, for checks that write nothing (log lines
    /// must name the running attempt). Read from the event store: a stale cached state would
    /// refuse the lines of an attempt another process started.
    pub async fn job(&self, job_id: Uuid, tenant: &TenantId) -> Result<Job, CommandError> {
        self.load_stored(job_id, tenant)
            .await
            .map(|context| context.aggregate)
    }

    /// The job's history from the event store, as the envelopes consumers receive.
    pub async fn history(
        &self,
        job_id: Uuid,
        tenant: &TenantId,
    ) -> Result<Vec<EventEnvelope>, CommandError> {
        let stored = self
            .reads
            .get_events::<Job>(&job_id.to_string())
            .await
            .map_err(|e| CommandError::from(AggregateError::<JobError>::from(e)))?;
        let envelopes = stored
            .iter()
            .map(|e| {
                EventEnvelope::from_stored(
                    &e.aggregate_id,
                    e.sequence as u64,
                    &e.event_type,
                    &e.event_version,
                    &e.payload,
                    &e.metadata,
                )
                .map_err(|e| CommandError::Internal(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        match envelopes.first() {
            Some(first) if first.tenant == tenant.as_str() => Ok(envelopes),
            _ => Err(JobError::NotFound.into()),
        }
    }

    /// Runs `command` against the cached state of the job if there is one. A cached state may
    /// be stale (see [`crate::cache`]), so a command it makes the aggregate refuse, or whose
    /// append conflicts, runs once more against the event store's state.
    async fn load_and_run(
        &self,
        job_id: Uuid,
        tenant: &TenantId,
        command: JobCommand,
        metadata: CommandMetadata,
    ) -> Result<(CommandOutcome, Arc<CachedJob>), CommandError> {
        if let Some(cached) = self.cache.get(&job_id) {
            let context = EventStoreAggregateContext {
                aggregate_id: job_id.to_string(),
                aggregate: cached.job.clone(),
                current_sequence: cached.sequence,
                current_snapshot: None,
            };
            let result = match Self::owned_by(context, tenant) {
                Ok(context) => self.run(context, command.clone(), metadata.clone()).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => {
                    self.metrics.record_job_cache("hit");
                    return result;
                }
                Err(CommandError::Rejected(_) | CommandError::Conflict) => {
                    self.metrics.record_job_cache("stale");
                    self.cache.forget(&job_id);
                }
                // The store failed: whether the append landed is unknown, so the state is
                // reloaded next time, and the caller hears of the failure as without a cache.
                Err(_) => {
                    self.cache.forget(&job_id);
                    return result;
                }
            }
        } else {
            self.metrics.record_job_cache("miss");
        }
        let context = self.load_stored(job_id, tenant).await?;
        self.run(context, command, metadata).await
    }

    /// Loads a job from the event store; a job of another tenant is indistinguishable from a
    /// missing one.
    async fn load_stored(
        &self,
        job_id: Uuid,
        tenant: &TenantId,
    ) -> Result<EventStoreAggregateContext<Job>, CommandError> {
        let context = self.store.load_aggregate(&job_id.to_string()).await?;
        Self::owned_by(context, tenant)
    }

    fn owned_by(
        context: EventStoreAggregateContext<Job>,
        tenant: &TenantId,
    ) -> Result<EventStoreAggregateContext<Job>, CommandError> {
        match context.aggregate.spec() {
            Some(spec) if spec.tenant == *tenant => Ok(context),
            _ => Err(JobError::NotFound.into()),
        }
    }

    /// Handles `command`, appends its events and caches the job's new state.
    async fn run(
        &self,
        mut context: EventStoreAggregateContext<Job>,
        command: JobCommand,
        metadata: CommandMetadata,
    ) -> Result<(CommandOutcome, Arc<CachedJob>), CommandError> {
        let (tenant, occurred_at) = (metadata.tenant.clone(), metadata.occurred_at);
        let sink = EventSink::default();
        context
            .aggregate
            .handle(command, &self.services, &sink)
            .await?;
        let events = sink.collect().await;
        let job_id: Uuid = context
            .aggregate_id
            .parse()
            .map_err(|e| CommandError::Internal(format!("job id: {e}")))?;
        // `handle` already applied its events (cqrs-es's `EventSink::write` applies each one it
        // records), so this is the job's new state; `commit` does not read it (the event store
        // is the source of truth), so it moves out for the cache.
        let job = std::mem::take(&mut context.aggregate);
        let committed = self
            .store
            .commit(events, context, metadata.into_map())
            .await?;
        if let Some(write_through) = self.write_through.get() {
            write_through.write_events(&tenant, occurred_at, events_of(&committed));
        }
        let sequence = committed.last().map_or(0, |e| e.sequence);
        let status = job.status().ok_or(JobError::NotFound)?;
        let cached = self.cache.put(job_id, job, sequence);
        Ok((
            CommandOutcome {
                job_id,
                status,
                sequence: sequence as u64,
                created: true,
            },
            cached,
        ))
    }

    /// Counts a handled command by its outcome.
    fn record<T>(&self, command: &str, result: &Result<T, CommandError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.metrics.record_command(command, outcome);
    }

    pub fn services(&self) -> &JobServices {
        &self.services
    }
}

/// Each committed event as (job id, sequence, event), for the write-through.
fn events_of(
    committed: &[cqrs_es::EventEnvelope<Job>],
) -> impl Iterator<Item = (&str, u64, &JobEvent)> {
    committed
        .iter()
        .map(|e| (e.aggregate_id.as_str(), e.sequence as u64, &e.payload))
}
