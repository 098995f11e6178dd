//! The event repository: postgres-es for reads, our own `persist` for writes.
//!
//! `persist` appends the events rows and their outbox rows in ONE statement (two
//! data-modifying CTE branches over `UNNEST` arrays). PostgreSQL runs a statement atomically,
//! so an event exists if and only if its outbox row exists, without an explicit transaction
//! and in a single round trip. Only a violation of the events primary key means that another
//! command appended the same sequence first: that, and nothing else, is an optimistic
//! concurrency conflict.

use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use cqrs_es::Aggregate;
use ordo_domain::envelope::keys;
use ordo_domain::{EventEnvelope, Job};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// The cqrs-es event store of jobs. Built without snapshots (cqrs-es 0.5 applies events twice
/// before saving one).
pub type JobEventStore = PersistedEventStore<OutboxEventRepository, Job>;

const EVENTS_PKEY: &str = "events_pkey";

const PERSIST_SQL: &str = r#"
WITH appended AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
)
INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, sequence, tenant)
SELECT * FROM UNNEST($8::uuid[], $1::text[], $2::text[], $4::text[], $9::jsonb[], $3::bigint[], $10::text[])
"#;

pub struct OutboxEventRepository {
    pool: PgPool,
    reads: PostgresEventRepository,
}

impl OutboxEventRepository {
    pub fn new(pool: PgPool) -> Self {
        Self {
            reads: PostgresEventRepository::new(pool.clone()),
            pool,
        }
    }

    pub fn into_event_store(self) -> JobEventStore {
        PersistedEventStore::new_event_store(self)
    }
}

/// The columns of one `persist` call, one array per column, as `UNNEST` wants them.
#[derive(Default)]
struct Columns {
    aggregate_types: Vec<String>,
    aggregate_ids: Vec<String>,
    sequences: Vec<i64>,
    event_types: Vec<String>,
    event_versions: Vec<String>,
    payloads: Vec<Value>,
    metadata: Vec<Value>,
    event_ids: Vec<Uuid>,
    envelopes: Vec<Value>,
    tenants: Vec<String>,
}

impl Columns {
    fn from_events(events: &[SerializedEvent]) -> Result<Self, PersistenceError> {
        let mut columns = Self::default();
        for event in events {
            // The event id is minted here, once, and stored on both sides so the event store
            // can rebuild the exact envelope consumers saw.
            let event_id = Uuid::now_v7();
            let mut metadata = event.metadata.clone();
            if let Value::Object(map) = &mut metadata {
                map.insert(keys::EVENT_ID.into(), Value::String(event_id.to_string()));
            }
            let envelope = EventEnvelope::from_stored(
                &event.aggregate_id,
                event.sequence as u64,
                &event.event_type,
                &event.event_version,
                &event.payload,
                &metadata,
            )
            .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
            columns.tenants.push(envelope.tenant.clone());
            columns.envelopes.push(serde_json::to_value(&envelope)?);
            columns.aggregate_types.push(event.aggregate_type.clone());
            columns.aggregate_ids.push(event.aggregate_id.clone());
            columns.sequences.push(event.sequence as i64);
            columns.event_types.push(event.event_type.clone());
            columns.event_versions.push(event.event_version.clone());
            columns.payloads.push(event.payload.clone());
            columns.metadata.push(metadata);
            columns.event_ids.push(event_id);
        }
        Ok(columns)
    }
}

fn persistence_error(error: sqlx::Error) -> PersistenceError {
    match &error {
        sqlx::Error::Database(db) if db.constraint() == Some(EVENTS_PKEY) => {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        _ => PersistenceError::UnknownError(Box::new(error)),
    }
}

impl PersistedEventRepository for OutboxEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if events.is_empty() {
            return Ok(());
        }
        let c = Columns::from_events(events)?;
        sqlx::query(PERSIST_SQL)
            .bind(&c.aggregate_types)
            .bind(&c.aggregate_ids)
            .bind(&c.sequences)
            .bind(&c.event_types)
            .bind(&c.event_versions)
            .bind(&c.payloads)
            .bind(&c.metadata)
            .bind(&c.event_ids)
            .bind(&c.envelopes)
            .bind(&c.tenants)
            .execute(&self.pool)
            .await
            .map_err(persistence_error)?;
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_all_events::<A>().await
    }
}
