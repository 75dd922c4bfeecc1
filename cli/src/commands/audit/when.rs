//! `--since` / `--until`: a duration ago or an RFC 3339 time, as Unix nanoseconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::CliError;

/// Unix nanoseconds of `raw` relative to `now`.
pub fn parse(flag: &str, raw: &str, now: SystemTime) -> Result<i64, CliError> {
    let raw = raw.trim();
    let at = if let Ok(ago) = humantime::parse_duration(raw) {
        now.checked_sub(ago)
            .ok_or_else(|| CliError::usage(format!("{flag} {raw}: before 1970")))?
    } else {
        rfc3339(raw).ok_or_else(|| {
            CliError::usage(format!(
                "{flag} {raw}: give a duration ago (1h, 30m, 7d) or an RFC 3339 time \
                 (2026-03-01T12:00:00Z, 2026-03-01T14:00:00+02:00)"
            ))
        })?
    };
    let nanos = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| CliError::usage(format!("{flag} {raw}: before 1970")))?
        .as_nanos();
    i64::try_from(nanos).map_err(|_| CliError::usage(format!("{flag} {raw}: too far ahead")))
}

/// An RFC 3339 time with `Z` or a numeric offset.
fn rfc3339(raw: &str) -> Option<SystemTime> {
    // humantime reads UTC only: take a numeric offset off and apply it ourselves.
    let (utc, offset) = match raw.len().checked_sub(6).map(|i| raw.split_at(i)) {
        Some((time, off))
            if (off.starts_with('+') || off.starts_with('-')) && off.as_bytes()[3] == b':' =>
        {
            let hours: u64 = off[1..3].parse().ok()?;
            let minutes: u64 = off[4..6].parse().ok()?;
            let secs = Duration::from_secs(hours * 3600 + minutes * 60);
            (format!("{time}Z"), Some((off.starts_with('+'), secs)))
        }
        _ => (raw.to_owned(), None),
    };
    let t = humantime::parse_rfc3339_weak(&utc).ok()?;
    Some(match offset {
        // 14:00+02:00 is 12:00Z.
        Some((true, d)) => t.checked_sub(d)?,
        Some((false, d)) => t.checked_add(d)?,
        None => t,
    })
}

/// An RFC 3339 time with milliseconds, UTC.
pub fn format(unix_nanos: i64) -> String {
    let Ok(nanos) = u64::try_from(unix_nanos) else {
        return unix_nanos.to_string();
    };
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(nanos)).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn durations_are_ago_and_times_keep_their_offset() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let secs = |n: i64| n * 1_000_000_000;
        assert_eq!(
            parse("--since", "1h", now).unwrap(),
            secs(1_800_000_000 - 3600)
        );
        assert_eq!(
            parse("--since", "2026-03-01T12:00:00Z", now).unwrap(),
            secs(1_772_366_400)
        );
        assert_eq!(
            parse("--since", "2026-03-01T14:00:00+02:00", now).unwrap(),
            secs(1_772_366_400)
        );
        assert_eq!(
            parse("--since", "2026-03-01T10:30:00-01:30", now).unwrap(),
            secs(1_772_366_400)
        );
        assert!(parse("--since", "yesterday", now).is_err());
        assert_eq!(format(secs(1_772_366_400)), "2026-03-01T12:00:00.000Z");
    }
}
