//! The part of PostgreSQL's `pgoutput` protocol (version 1) the relay needs: Relation messages,
//! which describe a table's columns, and Insert messages, whose row values arrive in text
//! format. `pgwire-replication` already turns Begin and Commit into events; every other message
//! (Update, Delete, Truncate, Type, Origin) is irrelevant to an insert-only publication and is
//! reported as [`Message::Other`].
//!
//! Wire layout: <https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html>

use bytes::Bytes;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("pgoutput message truncated while reading {0}")]
    Truncated(&'static str),
    #[error("pgoutput string is not valid UTF-8 in {0}")]
    NotUtf8(&'static str),
    #[error("insert into relation {0} arrived before its Relation message")]
    UnknownRelation(u32),
    #[error("unexpected tuple marker {0:#04x} in Insert")]
    BadTupleMarker(u8),
    #[error("column kind {0:#04x} is not supported (binary output must stay off)")]
    UnsupportedColumnKind(u8),
}

/// A table as the Relation message describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    pub columns: Vec<String>,
}

/// One column value of an inserted row. Text values are kept as the raw bytes PostgreSQL
/// rendered, so a `jsonb` payload reaches Kafka exactly as the database prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    /// A TOASTed value not sent because it did not change; never occurs in an Insert.
    Unchanged,
    Text(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Relation(Relation),
    Insert { relation: u32, values: Vec<Value> },
    Other(u8),
}

/// Decodes one `XLogData` payload. Slices share the payload's buffer rather than copy it.
pub fn decode(data: &Bytes) -> Result<Message, DecodeError> {
    let mut r = Reader { data, pos: 0 };
    match r.u8("message tag")? {
        b'R' => {
            let id = r.u32("relation id")?;
            let namespace = r.string("relation namespace")?;
            let name = r.string("relation name")?;
            let _replica_identity = r.u8("replica identity")?;
            let count = r.u16("column count")?;
            let mut columns = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let _flags = r.u8("column flags")?;
                columns.push(r.string("column name")?);
                let _type_oid = r.u32("column type")?;
                let _type_modifier = r.u32("column type modifier")?;
            }
            Ok(Message::Relation(Relation {
                id,
                namespace,
                name,
                columns,
            }))
        }
        b'I' => {
            let relation = r.u32("relation id")?;
            match r.u8("tuple marker")? {
                b'N' => {}
                other => return Err(DecodeError::BadTupleMarker(other)),
            }
            let count = r.u16("tuple column count")?;
            let mut values = Vec::with_capacity(count as usize);
            for _ in 0..count {
                values.push(match r.u8("column kind")? {
                    b'n' => Value::Null,
                    b'u' => Value::Unchanged,
                    b't' => {
                        let len = r.u32("column length")? as usize;
                        Value::Text(r.bytes(len, "column value")?)
                    }
                    other => return Err(DecodeError::UnsupportedColumnKind(other)),
                });
            }
            Ok(Message::Insert { relation, values })
        }
        other => Ok(Message::Other(other)),
    }
}

struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn bytes(&mut self, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.data.len())
            .ok_or(DecodeError::Truncated(what))?;
        let out = self.data.slice(self.pos..end);
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.bytes(N, what)?;
        Ok(bytes[..].try_into().expect("slice has N bytes"))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let rest = &self.data[self.pos..];
        let nul = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or(DecodeError::Truncated(what))?;
        let s = std::str::from_utf8(&rest[..nul]).map_err(|_| DecodeError::NotUtf8(what))?;
        self.pos += nul + 1;
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relation_message() -> Bytes {
        let mut m = vec![b'R'];
        m.extend(16385u32.to_be_bytes());
        m.extend(b"public\0outbox\0");
        m.push(b'd');
        m.extend(2u16.to_be_bytes());
        for name in [&b"id\0"[..], b"payload\0"] {
            m.push(1);
            m.extend(name);
            m.extend(2950u32.to_be_bytes());
            m.extend(u32::MAX.to_be_bytes());
        }
        m.into()
    }

    #[test]
    fn decodes_relation() {
        let Message::Relation(r) = decode(&relation_message()).unwrap() else {
            panic!("not a relation");
        };
        assert_eq!(r.id, 16385);
        assert_eq!(
            (r.namespace.as_str(), r.name.as_str()),
            ("public", "outbox")
        );
        assert_eq!(r.columns, ["id", "payload"]);
    }

    #[test]
    fn decodes_insert_with_text_and_null() {
        let value = "{\"a\": \"é😀\\u0001\"}".as_bytes();
        let mut m = vec![b'I'];
        m.extend(16385u32.to_be_bytes());
        m.push(b'N');
        m.extend(2u16.to_be_bytes());
        m.push(b't');
        m.extend((value.len() as u32).to_be_bytes());
        m.extend(value);
        m.push(b'n');
        let decoded = decode(&m.into()).unwrap();
        assert_eq!(
            decoded,
            Message::Insert {
                relation: 16385,
                values: vec![Value::Text(Bytes::copy_from_slice(value)), Value::Null],
            }
        );
    }

    #[test]
    fn truncated_messages_are_errors_not_panics() {
        let full = relation_message();
        for len in 1..full.len() {
            assert!(decode(&full.slice(..len)).is_err(), "prefix of {len} bytes");
        }
        let mut insert = vec![b'I'];
        insert.extend(1u32.to_be_bytes());
        insert.extend([b'N', 0, 1, b't', 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            decode(&insert.into()),
            Err(DecodeError::Truncated("column value"))
        );
    }

    #[test]
    fn other_messages_are_passed_over() {
        assert_eq!(
            decode(&Bytes::from_static(b"Tdata")),
            Ok(Message::Other(b'T'))
        );
    }
}
