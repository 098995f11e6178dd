//! The read models the projector writes, one module per sink, all laid out alike: the entry
//! point the binary runs (`run`: the projector loop with this sink), the sink's struct and
//! constructor, then its [`crate::Sink`] implementation (decode, write, and the hooks it
//! uses).

pub mod clickhouse;
pub mod redis_views;
