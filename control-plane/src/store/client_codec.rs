//! The on-disk form of an MCP client record.
//!
//! Clients are the one record kind counted in millions, and a data plane that starts cold
//! receives every one of them. So a client record starts with the client's sync wire form (a
//! protobuf `ClientState`), and a snapshot copies those bytes instead of decoding JSON and
//! re-encoding protobuf per client:
//!
//! ```text
//! 0x01 | varint n | ClientState (n bytes) | description (UTF-8, the rest)
//! ```
//!
//! Records written by earlier versions are JSON objects (first byte `{`). They are read as
//! before and rewritten in this form the next time the client changes; nothing has to be
//! migrated up front.

use super::{ClientRecord, StoreError, StoredToken};
use canopy_core::TokenHash;
use canopy_proto::v1 as pb;
use prost::Message;
use std::borrow::Cow;

/// First byte of a binary client record (a JSON record starts with `{`).
const BINARY_V1: u8 = 0x01;

/// The client as data planes receive it: name, token hashes with expiry, allow list.
pub fn wire_state(c: &ClientRecord) -> pb::ClientState {
    pb::ClientState {
        name: c.name.clone(),
        tokens: c
            .tokens
            .iter()
            .map(|t| pb::TokenHash {
                hash: t.hash.0.to_vec(),
                // On the wire 0 means "never expires"; an expiry at the epoch itself is
                // sent as 1 ms so it stays in the past.
                expires_at_ms: t.expires_at_ms.map_or(0, |ms| ms.max(1)),
            })
            .collect(),
        allowed: c.allowed.clone(),
    }
}

pub fn encode(c: &ClientRecord) -> Vec<u8> {
    let wire = wire_state(c).encode_to_vec();
    let mut out = Vec::with_capacity(1 + 10 + wire.len() + c.description.len());
    out.push(BINARY_V1);
    prost::encoding::encode_varint(wire.len() as u64, &mut out);
    out.extend_from_slice(&wire);
    out.extend_from_slice(c.description.as_bytes());
    out
}

pub fn decode(raw: &[u8]) -> Result<ClientRecord, StoreError> {
    let Some((wire, description)) = split(raw)? else {
        return serde_json::from_slice(raw).map_err(|e| StoreError::Decode(e.to_string()));
    };
    let state = pb::ClientState::decode(wire).map_err(|e| bad(&e))?;
    let tokens = state
        .tokens
        .into_iter()
        .map(|t| {
            let hash: [u8; 32] = t.hash.as_slice().try_into().map_err(|_| {
                StoreError::Decode(format!(
                    "client record: token hash of {} bytes, expected 32",
                    t.hash.len()
                ))
            })?;
            Ok(StoredToken {
                hash: TokenHash(hash),
                expires_at_ms: (t.expires_at_ms != 0).then_some(t.expires_at_ms),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(ClientRecord {
        name: state.name,
        description: std::str::from_utf8(description)
            .map_err(|e| bad(&e))?
            .to_owned(),
        allowed: state.allowed,
        tokens,
    })
}

/// The `ClientState` wire bytes of a stored record: borrowed from a binary record, built
/// for an old JSON one.
pub fn wire(raw: &[u8]) -> Result<Cow<'_, [u8]>, StoreError> {
    match split(raw)? {
        Some((wire, _)) => Ok(Cow::Borrowed(wire)),
        None => Ok(Cow::Owned(wire_state(&decode(raw)?).encode_to_vec())),
    }
}

/// A binary record's parts: the `ClientState` wire bytes and the description.
type Parts<'a> = (&'a [u8], &'a [u8]);

/// Splits a binary record into its parts; `None` for a JSON record.
fn split(raw: &[u8]) -> Result<Option<Parts<'_>>, StoreError> {
    if raw.first() != Some(&BINARY_V1) {
        return Ok(None);
    }
    let mut rest = &raw[1..];
    let len = prost::encoding::decode_varint(&mut rest).map_err(|e| bad(&e))?;
    match usize::try_from(len) {
        Ok(n) if n <= rest.len() => Ok(Some(rest.split_at(n))),
        _ => Err(StoreError::Decode(format!(
            "client record: wire form of {len} bytes in a record of {} bytes",
            raw.len()
        ))),
    }
}

fn bad(e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Decode(format!("client record: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ClientRecord {
        ClientRecord {
            name: "agent-1".into(),
            description: "the ops agent — ünïcode".into(),
            allowed: vec!["github".into(), "slack__post".into()],
            tokens: vec![
                StoredToken::permanent(TokenHash([7; 32])),
                StoredToken {
                    hash: TokenHash([9; 32]),
                    expires_at_ms: Some(1_700_000_000_000),
                },
            ],
        }
    }

    #[test]
    fn binary_record_round_trips() {
        let c = record();
        let raw = encode(&c);
        assert_eq!(raw[0], BINARY_V1);
        assert_eq!(decode(&raw).unwrap(), c);
    }

    #[test]
    fn wire_bytes_are_the_sync_message() {
        let c = record();
        let raw = encode(&c);
        let wire = wire(&raw).unwrap();
        assert!(matches!(wire, Cow::Borrowed(_)));
        assert_eq!(
            pb::ClientState::decode(&*wire).unwrap(),
            wire_state(&c),
            "a snapshot sends exactly what a live change would"
        );
    }

    #[test]
    fn json_records_of_earlier_versions_still_read() {
        let c = record();
        let old = serde_json::to_vec(&c).unwrap();
        assert_eq!(decode(&old).unwrap(), c);
        let wire = wire(&old).unwrap();
        assert!(matches!(wire, Cow::Owned(_)));
        assert_eq!(pb::ClientState::decode(&*wire).unwrap(), wire_state(&c));
    }

    #[test]
    fn empty_description_and_no_tokens() {
        let c = ClientRecord {
            name: "x".into(),
            description: String::new(),
            allowed: vec![],
            tokens: vec![],
        };
        assert_eq!(decode(&encode(&c)).unwrap(), c);
    }

    #[test]
    fn expiry_at_the_epoch_stays_expired() {
        let mut c = record();
        c.tokens[1].expires_at_ms = Some(0);
        let back = decode(&encode(&c)).unwrap();
        assert_eq!(back.tokens[1].expires_at_ms, Some(1));
        assert!(!back.tokens[1].is_live(5));
    }

    #[test]
    fn corrupt_records_are_clear_errors() {
        let raw = encode(&record());
        for bad in [
            &raw[..1],             // tag only, no length
            &raw[..raw.len() / 3], // cut inside the wire form
            &[BINARY_V1, 0xff][..],
        ] {
            let e = decode(bad).unwrap_err().to_string();
            assert!(e.contains("client record"), "{e}");
        }
        let mut short_hash = record();
        short_hash.tokens.truncate(1);
        let mut state = wire_state(&short_hash);
        state.tokens[0].hash.truncate(5);
        let wire = state.encode_to_vec();
        let mut raw = vec![BINARY_V1];
        prost::encoding::encode_varint(wire.len() as u64, &mut raw);
        raw.extend_from_slice(&wire);
        let e = decode(&raw).unwrap_err().to_string();
        assert!(e.contains("5 bytes, expected 32"), "{e}");
        let mut bad_utf8 = encode(&record());
        bad_utf8.push(0xff);
        assert!(decode(&bad_utf8).is_err());
    }
}
