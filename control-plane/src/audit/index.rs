//! The secondary index of the event tree (`audit_index`): which events have a given client,
//! subject, server, tool or outcome, by hour.
//!
//! Key: hour bucket (8 bytes, byte order = time order), field tag (1), value length (2, big
//! endian), value (its first [`MAX_VALUE`] bytes), write round (8). Value: the event keys
//! (24 bytes each, see `key.rs`) of that round's events with that value in that hour. One
//! entry per (hour, field, value) and write round rather than one per event: a round of
//! thousands of events from one data plane writes a few dozen entries (one per distinct
//! value), so indexing costs ingest little.
//!
//! The index only narrows: a query still decodes each event it names and checks the whole
//! filter, so an entry naming an event that retention removed, or one written twice by a
//! retried round, is harmless (the first is skipped, the second de-duplicated). Hour first
//! in the key lets retention drop whole hours with one range from the start of the tree.

use super::key::{time_bytes, KEY_LEN};
use canopy_proto::v1 as pb;
use pb::audit_event::Kind;
use pb::audit_principal::Kind as Who;

/// Indexed fields (stable tags: they are stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(super) enum Field {
    Client = 1,
    Subject = 2,
    Server = 3,
    Tool = 4,
    Outcome = 5,
}

/// Bytes of a value the key keeps: longer values share an entry with every value of the
/// same prefix (the full filter check sorts them out).
pub(super) const MAX_VALUE: usize = 256;
const HOUR: i64 = 3_600_000_000_000;
/// Bytes of the key before the value: bucket, tag, length.
const HEAD: usize = 8 + 1 + 2;

/// The hour bucket of a time (Unix ns), encoded so byte order is time order.
pub(super) fn bucket(time_unix_nanos: i64) -> [u8; 8] {
    time_bytes(time_unix_nanos.div_euclid(HOUR))
}

/// The start of the hour of a time (Unix ns).
pub(super) fn hour_of(time_unix_nanos: i64) -> i64 {
    time_unix_nanos.div_euclid(HOUR).saturating_mul(HOUR)
}

/// Hours (buckets) from `lo` to `hi` inclusive, as times at the start of each.
pub(super) fn hours(lo: i64, hi: i64) -> impl DoubleEndedIterator<Item = i64> {
    (lo.div_euclid(HOUR)..=hi.div_euclid(HOUR)).map(|h| h.saturating_mul(HOUR))
}

/// Buckets between two times (inclusive), saturating.
pub(super) fn hour_count(lo: i64, hi: i64) -> u64 {
    (hi.div_euclid(HOUR) - lo.div_euclid(HOUR)).unsigned_abs() + 1
}

fn clipped(value: &str) -> &[u8] {
    let b = value.as_bytes();
    &b[..b.len().min(MAX_VALUE)]
}

/// The key prefix of one (hour, field, value): every round's entry for it.
pub(super) fn prefix(hour_time: i64, field: Field, value: &str) -> Vec<u8> {
    let v = clipped(value);
    let mut key = Vec::with_capacity(HEAD + v.len() + 8);
    key.extend_from_slice(&bucket(hour_time));
    key.push(field as u8);
    // `clipped` keeps at most MAX_VALUE (< 2^16) bytes.
    key.extend_from_slice(&(v.len() as u16).to_be_bytes());
    key.extend_from_slice(v);
    key
}

/// The entry key of one (hour, field, value) in write round `round`.
pub(super) fn entry_key(hour_time: i64, field: Field, value: &str, round: u64) -> Vec<u8> {
    let mut key = prefix(hour_time, field, value);
    key.extend_from_slice(&round.to_be_bytes());
    key
}

/// The event keys an entry holds.
pub(super) fn event_keys(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.chunks_exact(KEY_LEN)
}

/// The indexed values of an event (as `filter.rs` reads them for matching).
pub(super) fn terms(event: &pb::AuditEvent) -> Vec<(Field, &str)> {
    let mut out = Vec::with_capacity(4);
    let Some(kind) = &event.kind else {
        return out;
    };
    let principal = match kind {
        Kind::Request(r) => r.principal.as_ref(),
        Kind::Change(c) => c.actor.as_ref(),
        _ => None,
    }
    .and_then(|p| p.kind.as_ref());
    match principal {
        Some(Who::McpClient(c)) if !c.is_empty() => out.push((Field::Client, c.as_str())),
        Some(Who::Sso(s)) if !s.subject.is_empty() => {
            out.push((Field::Subject, s.subject.as_str()));
        }
        _ => {}
    }
    match kind {
        Kind::Request(r) => {
            if !r.server.is_empty() {
                out.push((Field::Server, r.server.as_str()));
            }
            if !r.tool.is_empty() {
                out.push((Field::Tool, r.tool.as_str()));
                // `--tool` takes the upstream's name too (see `filter::tool_matches`): a call
                // on `/mcp` records `server__tool`, so it is indexed under both.
                if let Some(own) = r
                    .tool
                    .strip_prefix(r.server.as_str())
                    .and_then(|t| t.strip_prefix(canopy_core::name::SEPARATOR))
                    .filter(|t| !r.server.is_empty() && !t.is_empty())
                {
                    out.push((Field::Tool, own));
                }
            }
        }
        Kind::Change(c) if c.object_kind == "server" && !c.object_name.is_empty() => {
            out.push((Field::Server, c.object_name.as_str()));
        }
        _ => {}
    }
    if let Some(o) = super::filter::outcome_name(kind) {
        out.push((Field::Outcome, o));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_hour_then_field_then_value() {
        let a = entry_key(HOUR * 5, Field::Client, "b", 9);
        let b = entry_key(HOUR * 5 + 1, Field::Client, "b", 1);
        assert!(a.starts_with(&prefix(HOUR * 5 + 7, Field::Client, "b")));
        assert!(b.starts_with(&prefix(HOUR * 5, Field::Client, "b")));
        assert!(
            entry_key(HOUR * 5, Field::Client, "b", 1) < entry_key(HOUR * 6, Field::Client, "a", 1)
        );
        assert!(entry_key(-1, Field::Tool, "z", 1) < entry_key(0, Field::Client, "a", 1));
        // A value is not a prefix of a longer one: the length is in the key.
        assert!(!entry_key(0, Field::Client, "ab", 1).starts_with(&prefix(0, Field::Client, "a")));
        assert_eq!(hours(-1, HOUR).count(), 3);
        assert_eq!(hour_count(-1, HOUR), 3);
        let long = "x".repeat(MAX_VALUE + 10);
        assert_eq!(prefix(0, Field::Tool, &long).len(), HEAD + MAX_VALUE);
    }
}
