//! Key layout of the event tree: 8 bytes of time, then the 16-byte event id.
//!
//! The time is the signed Unix nanosecond count with its sign bit flipped, big-endian, so
//! byte order is time order (also before 1970) and a time window is one range scan.

/// Bytes of an event id (the de-duplication key).
pub(super) const ID_LEN: usize = 16;
pub(super) const KEY_LEN: usize = 8 + ID_LEN;

pub(super) type EventKey = [u8; KEY_LEN];

pub(super) fn time_bytes(time_unix_nanos: i64) -> [u8; 8] {
    ((time_unix_nanos as u64) ^ (1 << 63)).to_be_bytes()
}

#[cfg(test)]
pub(super) fn time_from_bytes(raw: [u8; 8]) -> i64 {
    (u64::from_be_bytes(raw) ^ (1 << 63)) as i64
}

pub(super) fn event_key(time_unix_nanos: i64, id: &[u8; ID_LEN]) -> EventKey {
    let mut key = [0u8; KEY_LEN];
    key[..8].copy_from_slice(&time_bytes(time_unix_nanos));
    key[8..].copy_from_slice(id);
    key
}

/// The first key at or after `time_unix_nanos`.
pub(super) fn lower_bound(time_unix_nanos: i64) -> EventKey {
    event_key(time_unix_nanos, &[0; ID_LEN])
}

/// The id part of a stored key (`None` for a key of another length: not ours).
pub(super) fn id_of(key: &[u8]) -> Option<[u8; ID_LEN]> {
    if key.len() != KEY_LEN {
        return None;
    }
    <[u8; ID_LEN]>::try_from(&key[8..]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_time_order() {
        let times = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000_000_000, i64::MAX];
        for pair in times.windows(2) {
            assert!(lower_bound(pair[0]) < lower_bound(pair[1]), "{pair:?}");
        }
        for t in times {
            assert_eq!(time_from_bytes(time_bytes(t)), t);
        }
        let key = event_key(7, &[9; ID_LEN]);
        assert_eq!(id_of(&key), Some([9; ID_LEN]));
        assert_eq!(id_of(&key[1..]), None);
    }
}
