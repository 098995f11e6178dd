//! The library side of the `ordo` package: private instances of the services Ordo runs on
//! (a PostgreSQL cluster, a Redis, a Kafka-protocol broker) and `ordo` role processes.
//! `ordo bench chaos` runs its faults on them; the system tests share them.

pub mod instances;
