//! Payload encoding.
//!
//! Event payloads and record metadata are encoded with postcard, whose wire
//! format is documented and stable (postcard 1.x): a log must stay readable
//! for decades, so the encoding may not depend on an unmaintained crate or
//! on Rust's memory layout. Postcard is not self-describing: fields are
//! written in declaration order and enum variants by index, so a stored
//! type's fields and variants are never reordered or removed. A changed
//! shape is a new schema version with an upcaster on read.

use serde::{Serialize, de::DeserializeOwned};

/// Why stored bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("payload does not decode: {0}")]
pub struct DecodeError(#[from] postcard::Error);

/// Encodes a value with postcard.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain data into a growable vector cannot fail; a failure
    // would be a programmer error (for example a map with non-string keys
    // that postcard rejects), so it is an assertion, not a `Result`.
    postcard::to_allocvec(value).expect("postcard encodes every ledger type")
}

/// Decodes a value written by [`encode`]. Trailing bytes are an error, so a
/// payload cannot carry hidden data behind a valid prefix.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if rest.is_empty() { Ok(value) } else { Err(DecodeError(postcard::Error::DeserializeUnexpectedEnd)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        name: String,
        count: u32,
    }

    #[test]
    fn round_trips_and_rejects_trailing_bytes() {
        let value = Sample { name: "acme".into(), count: 300 };
        let mut bytes = encode(&value);
        // Postcard's documented layout: varint length + UTF-8, then a varint.
        assert_eq!(bytes, [4, b'a', b'c', b'm', b'e', 0xac, 0x02]);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), value);
        bytes.push(0);
        assert!(decode::<Sample>(&bytes).is_err());
    }
}
