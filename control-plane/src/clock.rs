//! Wall-clock time as Unix milliseconds (token expiry, last-seen stamps).

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    // A clock before 1970 is a broken host; treating it as 0 only makes tokens expire early.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
