//! The read-model query API (in progress).
