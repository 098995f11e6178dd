//! The pagination cursor of job lists: the index a listing walks and the position (score, job
//! id) of the last job it examined, as base64url JSON. Clients treat it as opaque.
//!
//! A position rather than an offset keeps pages stable while jobs are added: newer jobs sort
//! before the cursor and never shift the pages after it. The index is pinned so a listing
//! keeps its order even if another filter's index becomes the more selective one meanwhile.

use crate::QueryError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The index suffix (`all`, `status:QUEUED`, `type:…`, `queue:…`, `label:k=v`).
    #[serde(rename = "i")]
    pub index: String,
    /// Score of the last examined job (ms).
    #[serde(rename = "s")]
    pub score: i64,
    /// Its id: among jobs of equal score, the listing continues below it.
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        encode(self)
    }

    pub fn decode(text: &str) -> Result<Self, QueryError> {
        decode(text)
    }
}

/// Any cursor as base64url JSON (the log search's too).
pub fn encode<T: Serialize>(cursor: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).expect("a cursor serializes"))
}

/// The cursor [`encode`] made, or a 400.
pub fn decode<T: DeserializeOwned>(text: &str) -> Result<T, QueryError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            QueryError::BadRequest(
                "cursor is not valid; pass the next_cursor of a previous page unchanged".into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let cursor = Cursor {
            index: "label:team=a:b".into(),
            score: 1_700_000_000_123,
            id: "0190-abc".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        assert!(Cursor::decode("not a cursor").is_err());
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode(b"{}")).is_err());
    }
}
