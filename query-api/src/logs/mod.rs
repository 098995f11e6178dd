//! Log search over ClickHouse's `logs` table (README, "Log search"):
//! - [`parse`]: the query language into an expression;
//! - [`sql`]: the expression into SQL conditions with every value a query parameter;
//! - [`request`]: a request's fields checked into a [`request::Search`];
//! - [`store`]: the bounded query, the page and its cursor, the circuit breaker.

pub mod parse;
pub mod request;
pub mod sql;
pub mod store;

pub use store::{LogSearchConfig, LogStore};
