//! Request bodies: read whole up to the limit, then decompressed (`Content-Encoding: gzip`
//! or `deflate`; Loki's snappy blocks) under the same limit, so a small compressed body
//! cannot expand into more memory than a plain one may take (a gzip bomb stops at the limit
//! plus one byte).

use crate::error::IngestError;
use axum::body::Bytes;
use axum::http::{header, HeaderMap};
use std::borrow::Cow;
use std::io::Read;

/// The request's `Content-Encoding`, lowercase (`""` without one).
pub fn content_encoding(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The body of a request, decoded as its `encoding` ([`content_encoding`]) says; at most
/// `limit` bytes before and after.
pub fn decode_content(encoding: &str, body: Bytes, limit: usize) -> Result<Bytes, IngestError> {
    match encoding {
        "" | "identity" => Ok(body),
        "gzip" | "x-gzip" => inflate(flate2::read::MultiGzDecoder::new(&body[..]), limit),
        "deflate" => inflate(flate2::read::ZlibDecoder::new(&body[..]), limit),
        other => Err(IngestError::Unsupported(format!(
            "Content-Encoding {other:?} is not supported; use gzip, deflate or none"
        ))),
    }
}

fn inflate(reader: impl Read, limit: usize) -> Result<Bytes, IngestError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::malformed(format!("the body does not decompress: {e}")))?;
    if out.len() > limit {
        return Err(IngestError::TooLarge {
            limit,
            decompressed: true,
        });
    }
    Ok(out.into())
}

/// A snappy block (the raw format, as Loki's push clients compress protobuf bodies), whose
/// announced length is checked against `limit` before anything is allocated.
pub fn snappy_block(body: &[u8], limit: usize) -> Result<Vec<u8>, IngestError> {
    let malformed = |e: snap::Error| {
        IngestError::malformed(format!("the body is not a snappy block (raw format): {e}"))
    };
    let length = snap::raw::decompress_len(body).map_err(malformed)?;
    if length > limit {
        return Err(IngestError::TooLarge {
            limit,
            decompressed: true,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(malformed)
}

/// Text of a body or field: invalid UTF-8 sequences become U+FFFD (the documented rule), so
/// a line with a stray byte is kept, not refused. Borrows when the bytes are valid.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap().into()
    }

    #[test]
    fn the_encoding_is_read_from_the_header_in_lowercase() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_encoding(&headers), "");
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(" GZip "));
        assert_eq!(content_encoding(&headers), "gzip");
    }

    #[test]
    fn gzip_bodies_are_inflated_within_the_limit() {
        let plain = b"{\"message\":\"hello\"}".repeat(10);
        let body = decode_content("gzip", gzip(&plain), 1000).unwrap();
        assert_eq!(&body[..], &plain[..]);
        let same = decode_content("", Bytes::from(plain.clone()), 1000).unwrap();
        assert_eq!(&same[..], &plain[..]);
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        // 64 MiB of zeros compress to about 64 KiB.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        let error = decode_content("gzip", bomb, 1 << 20).unwrap_err();
        assert_eq!(
            error,
            IngestError::TooLarge {
                limit: 1 << 20,
                decompressed: true
            }
        );
    }

    #[test]
    fn unknown_encodings_and_broken_streams_are_refused() {
        let error = decode_content("br", Bytes::from_static(b"x"), 10).unwrap_err();
        assert_eq!(error.status(), 415);
        let error = decode_content("gzip", Bytes::from_static(b"nope"), 10).unwrap_err();
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn snappy_blocks_are_checked_against_the_limit_before_decompressing() {
        let plain = b"a log line ".repeat(100);
        let block = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
        assert_eq!(snappy_block(&block, 10_000).unwrap(), plain);
        assert_eq!(snappy_block(&block, 100).unwrap_err().status(), 413);
        assert_eq!(
            snappy_block(b"\xff\xff\xff", 100).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        assert_eq!(text(b"caf\xe9 ok"), "caf\u{FFFD} ok");
        assert!(matches!(text(b"fine"), Cow::Borrowed("fine")));
    }
}
