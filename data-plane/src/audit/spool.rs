//! The spool: audit events waiting for the control plane, in a local file that survives a
//! restart of the data plane.
//!
//! Layout: a 16-byte header — `CNPYAUD1` and the offset up to which the control plane has
//! acknowledged (u64, little endian) — then records: length (u32 LE), the first 4 bytes of
//! the BLAKE3 hash of the payload, the payload (one `AuditEvent`, protobuf). A crash in the
//! middle of an append leaves a torn last record: opening the file finds it (short, or its
//! checksum does not match), logs it and cuts the file there. Once every record is
//! acknowledged the file is cut back to its header.
//!
//! Bounded by `--audit-spool-max-bytes`; an append that does not fit first reclaims the
//! acknowledged records (compaction), then keeps what fits and reports the rest (the caller
//! counts them as dropped). The file is created 0600.
//!
//! Blocking file I/O: the shipper calls it from `spawn_blocking`.

use canopy_proto::v1 as pb;
use prost::Message;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;
const MAGIC: &[u8; 8] = b"CNPYAUD1";
const HEADER: u64 = 16;
const RECORD_HEAD: u64 = 8;
/// Larger records are not written (and, read back, mean the file is damaged).
const MAX_RECORD: u32 = 16 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("audit spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit spool {0} is not a Canopy audit spool (wrong header); move it away")]
    NotASpool(PathBuf),
}

pub(super) struct Spool {
    path: PathBuf,
    file: File,
    max_bytes: u64,
    /// End of the file (the next append goes here).
    len: u64,
    /// Everything before this offset is acknowledged (persisted in the header).
    acked: u64,
    /// Everything before this offset was read out to be sent (not persisted: after a
    /// reconnect or a restart, sending starts again at `acked`).
    sent: u64,
}

/// Records read out to be sent, and where the spool's read position is after them.
pub(super) struct Chunk {
    pub events: Vec<pb::AuditEvent>,
    pub end: u64,
}

fn checksum(payload: &[u8]) -> [u8; 4] {
    let h = blake3::hash(payload);
    let mut c = [0u8; 4];
    c.copy_from_slice(&h.as_bytes()[..4]);
    c
}

impl Spool {
    /// Opens (or creates) the spool at `path`; a torn or damaged tail is cut off.
    pub(super) fn open(path: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let io = |source| SpoolError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let file = opts.open(path).map_err(io)?;
        #[cfg(unix)]
        {
            // A file that existed before keeps its mode on open: make it private.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        let len = file.metadata().map_err(io)?.len();
        let mut spool = Spool {
            path: path.to_owned(),
            file,
            max_bytes: max_bytes.max(HEADER + 1024),
            len,
            acked: HEADER,
            sent: HEADER,
        };
        if len < HEADER {
            spool.reset().map_err(io)?;
            return Ok(spool);
        }
        let mut head = [0u8; HEADER as usize];
        spool.file.seek(SeekFrom::Start(0)).map_err(io)?;
        spool.file.read_exact(&mut head).map_err(io)?;
        if &head[..8] != MAGIC {
            return Err(SpoolError::NotASpool(path.to_owned()));
        }
        let mut acked = [0u8; 8];
        acked.copy_from_slice(&head[8..]);
        spool.acked = u64::from_le_bytes(acked).clamp(HEADER, len);
        spool.sent = spool.acked;
        let good = spool.scan().map_err(io)?;
        if good < len {
            tracing::warn!(
                path = %path.display(),
                offset = good,
                bytes = len - good,
                "audit spool ends in a torn or damaged record (a crash while writing?); skipping it"
            );
            spool.file.set_len(good).map_err(io)?;
            spool.len = good;
        }
        if spool.acked >= spool.len {
            spool.reset().map_err(io)?;
        }
        Ok(spool)
    }

    /// The end of the last whole, intact record from `acked` on.
    fn scan(&mut self) -> std::io::Result<u64> {
        let mut r = std::io::BufReader::new(&self.file);
        r.seek(SeekFrom::Start(self.acked))?;
        let mut at = self.acked;
        let mut payload = Vec::new();
        loop {
            match read_record(&mut r, &mut payload)? {
                Some(n) if pb::AuditEvent::decode(payload.as_slice()).is_ok() => at += n,
                _ => return Ok(at),
            }
        }
    }

    /// Empty: just the header, nothing to send.
    fn reset(&mut self) -> std::io::Result<()> {
        self.file.set_len(HEADER)?;
        self.len = HEADER;
        self.acked = HEADER;
        self.sent = HEADER;
        self.write_header()
    }

    fn write_header(&mut self) -> std::io::Result<()> {
        let mut head = [0u8; HEADER as usize];
        head[..8].copy_from_slice(MAGIC);
        head[8..].copy_from_slice(&self.acked.to_le_bytes());
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&head)
    }

    /// Appends what fits of `events` (flushed to disk); returns how many did not fit.
    pub(super) fn append(&mut self, events: &[pb::AuditEvent]) -> Result<usize, SpoolError> {
        let wanted: u64 = events
            .iter()
            .map(|e| RECORD_HEAD + e.encoded_len() as u64)
            .sum();
        if self.len + wanted > self.max_bytes {
            self.compact().map_err(|source| SpoolError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        let mut buf = Vec::new();
        let mut kept = 0;
        for ev in events {
            let payload = ev.encode_to_vec();
            let Ok(n) = u32::try_from(payload.len()) else {
                break;
            };
            let size = RECORD_HEAD + u64::from(n);
            if n > MAX_RECORD || self.len + buf.len() as u64 + size > self.max_bytes {
                break;
            }
            buf.extend_from_slice(&n.to_le_bytes());
            buf.extend_from_slice(&checksum(&payload));
            buf.extend_from_slice(&payload);
            kept += 1;
        }
        if !buf.is_empty() {
            let io = |source| SpoolError::Io {
                path: self.path.clone(),
                source,
            };
            self.file.seek(SeekFrom::Start(self.len)).map_err(io)?;
            self.file.write_all(&buf).map_err(io)?;
            self.file.sync_data().map_err(io)?;
            self.len += buf.len() as u64;
        }
        Ok(events.len() - kept)
    }

    /// Moves the unacknowledged records to the front, reclaiming the acknowledged ones — only
    /// while none of them is out being sent (their offsets are held by the shipper).
    fn compact(&mut self) -> std::io::Result<()> {
        if self.acked <= HEADER || self.sent != self.acked {
            return Ok(());
        }
        let mut rest = Vec::new();
        self.file.seek(SeekFrom::Start(self.acked))?;
        (&self.file)
            .take(self.len - self.acked)
            .read_to_end(&mut rest)?;
        // Header first (acked = start of records), then the records: a crash in between
        // leaves a header pointing at the records' new place, with at worst a torn tail.
        let moved = self.acked - HEADER;
        self.acked = HEADER;
        self.sent = HEADER;
        self.write_header()?;
        self.file.seek(SeekFrom::Start(HEADER))?;
        self.file.write_all(&rest)?;
        self.len = HEADER + rest.len() as u64;
        self.file.set_len(self.len)?;
        self.file.sync_data()?;
        tracing::debug!(reclaimed = moved, "audit spool compacted");
        Ok(())
    }

    /// Up to `max_events` records (and about `max_bytes`) not yet read out to be sent.
    pub(super) fn read_chunk(
        &mut self,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Chunk, SpoolError> {
        let io = |source| SpoolError::Io {
            path: self.path.clone(),
            source,
        };
        let mut r = std::io::BufReader::new(&self.file);
        r.seek(SeekFrom::Start(self.sent)).map_err(io)?;
        let mut at = self.sent;
        let mut events = Vec::new();
        let mut bytes = 0;
        let mut payload = Vec::new();
        let mut damaged = false;
        while at < self.len && events.len() < max_events && bytes < max_bytes {
            let ev = read_record(&mut r, &mut payload)
                .map_err(io)?
                .and_then(|n| Some((n, pb::AuditEvent::decode(payload.as_slice()).ok()?)));
            match ev {
                Some((n, ev)) => {
                    events.push(ev);
                    at += n;
                    bytes += payload.len();
                }
                None => {
                    damaged = true;
                    break;
                }
            }
        }
        drop(r);
        if damaged {
            self.cut(at);
        }
        self.sent = at;
        Ok(Chunk { events, end: at })
    }

    /// Damage found while reading (it was checked at open, so the disk changed under us):
    /// the rest is skipped, never a panic.
    fn cut(&mut self, at: u64) {
        tracing::warn!(path = %self.path.display(), offset = at, bytes = self.len - at, "audit spool record is damaged; skipping the rest of the spool");
        if let Err(e) = self.file.set_len(at) {
            tracing::warn!(error = %e, "cannot cut the audit spool");
        }
        self.len = at;
    }

    /// The control plane has everything before `end`: persisted, and the file emptied once
    /// nothing is left.
    pub(super) fn acked(&mut self, end: u64) -> Result<(), SpoolError> {
        self.acked = self.acked.max(end.min(self.len));
        let done = if self.acked >= self.len {
            self.reset()
        } else {
            self.write_header()
        };
        done.map_err(|source| SpoolError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Sending starts again at the first unacknowledged record (after a reconnect).
    pub(super) fn rewind(&mut self) {
        self.sent = self.acked;
    }

    /// Records not yet read out to be sent.
    pub(super) fn has_unsent(&self) -> bool {
        self.sent < self.len
    }

    /// Bytes of records not yet acknowledged.
    pub(super) fn pending_bytes(&self) -> u64 {
        self.len - self.acked
    }

    /// Room for more records.
    pub(super) fn free_bytes(&self) -> u64 {
        self.max_bytes.saturating_sub(self.len)
    }
}

/// One record into `payload`: `Some(bytes it took)`, or `None` at the end or at a torn or
/// damaged record.
fn read_record(r: &mut impl Read, payload: &mut Vec<u8>) -> std::io::Result<Option<u64>> {
    let mut head = [0u8; RECORD_HEAD as usize];
    if !read_full(r, &mut head)? {
        return Ok(None);
    }
    let mut n = [0u8; 4];
    n.copy_from_slice(&head[..4]);
    let n = u32::from_le_bytes(n);
    if n > MAX_RECORD {
        return Ok(None);
    }
    payload.clear();
    payload.resize(n as usize, 0);
    if !read_full(r, payload)? || checksum(payload) != head[4..] {
        return Ok(None);
    }
    Ok(Some(RECORD_HEAD + u64::from(n)))
}

/// `false` when the input ends before `buf` is full.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    fn event(n: u8) -> pb::AuditEvent {
        pb::AuditEvent {
            id: vec![n; 16],
            time_unix_nanos: i64::from(n),
            kind: Some(pb::audit_event::Kind::Request(pb::McpRequestEvent {
                method: format!("tools/call-{n}"),
                ..Default::default()
            })),
        }
    }

    fn ids(events: &[pb::AuditEvent]) -> Vec<u8> {
        events.iter().map(|e| e.id[0]).collect()
    }

    #[test]
    fn write_read_ack_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.spool");
        let mut s = Spool::open(&path, 1 << 20).unwrap();
        assert!(!s.has_unsent());
        assert_eq!(s.append(&[event(1), event(2), event(3)]).unwrap(), 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let c = s.read_chunk(2, usize::MAX).unwrap();
        assert_eq!(ids(&c.events), vec![1, 2]);
        s.acked(c.end).unwrap();
        // A restart: the acknowledged records are not sent again.
        drop(s);
        let mut s = Spool::open(&path, 1 << 20).unwrap();
        let c = s.read_chunk(10, usize::MAX).unwrap();
        assert_eq!(ids(&c.events), vec![3]);
        // Not acknowledged: a rewind sends it again.
        s.rewind();
        let c = s.read_chunk(10, usize::MAX).unwrap();
        assert_eq!(ids(&c.events), vec![3]);
        s.acked(c.end).unwrap();
        assert_eq!(s.pending_bytes(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), HEADER);
    }

    #[test]
    fn torn_last_record_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.spool");
        let mut s = Spool::open(&path, 1 << 20).unwrap();
        s.append(&[event(1), event(2)]).unwrap();
        let whole = s.len;
        drop(s);
        // A crash mid-write: the last record's tail is missing.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(whole - 3).unwrap();
        drop(f);
        let mut s = Spool::open(&path, 1 << 20).unwrap();
        let c = s.read_chunk(10, usize::MAX).unwrap();
        assert_eq!(ids(&c.events), vec![1]);
        // And a record whose bytes changed (checksum) is skipped the same way.
        s.append(&[event(4)]).unwrap();
        let end = s.len;
        drop(s);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = usize::try_from(end).unwrap() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let mut s = Spool::open(&path, 1 << 20).unwrap();
        let c = s.read_chunk(10, usize::MAX).unwrap();
        assert_eq!(ids(&c.events), vec![1]);
    }

    #[test]
    fn bounded_append_reports_what_did_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.spool");
        let one = RECORD_HEAD + event(1).encoded_len() as u64;
        // Header + room for the minimum, which is larger than 3 records: use the minimum.
        let max = HEADER + 1024;
        let mut s = Spool::open(&path, max).unwrap();
        let fit = usize::try_from((max - HEADER) / one).unwrap();
        let events: Vec<_> = (0..u8::try_from(fit + 5).unwrap()).map(event).collect();
        assert_eq!(s.append(&events).unwrap(), 5);
        assert!(s.free_bytes() < one);
        assert_eq!(s.append(&[event(9)]).unwrap(), 1);
        let c = s.read_chunk(usize::MAX, usize::MAX).unwrap();
        assert_eq!(c.events.len(), fit);
        s.acked(c.end).unwrap();
        assert_eq!(s.append(&[event(9)]).unwrap(), 0);
    }

    #[test]
    fn acknowledged_records_make_room_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.spool");
        let one = RECORD_HEAD + event(1).encoded_len() as u64;
        let max = HEADER + 1024;
        let fit = usize::try_from((max - HEADER) / one).unwrap();
        let mut s = Spool::open(&path, max).unwrap();
        let events: Vec<_> = (0..u8::try_from(fit).unwrap()).map(event).collect();
        assert_eq!(s.append(&events).unwrap(), 0);
        // Half of them acknowledged: a full spool takes that much again.
        let c = s.read_chunk(fit / 2, usize::MAX).unwrap();
        s.acked(c.end).unwrap();
        // (Two fewer: ids of two digits encode a byte longer than most of the first half.)
        let more: Vec<_> = (50..50 + u8::try_from(fit / 2 - 2).unwrap())
            .map(event)
            .collect();
        assert_eq!(s.append(&more).unwrap(), 0);
        let c = s.read_chunk(usize::MAX, usize::MAX).unwrap();
        let want: Vec<u8> = events[fit / 2..]
            .iter()
            .chain(&more)
            .map(|e| e.id[0])
            .collect();
        assert_eq!(ids(&c.events), want);
        // And it survives a reopen.
        drop(s);
        let mut s = Spool::open(&path, max).unwrap();
        assert_eq!(
            ids(&s.read_chunk(usize::MAX, usize::MAX).unwrap().events),
            want
        );
    }

    #[test]
    fn a_file_that_is_not_a_spool_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.spool");
        std::fs::write(&path, b"something else entirely, not ours").unwrap();
        assert!(matches!(
            Spool::open(&path, 1 << 20),
            Err(SpoolError::NotASpool(_))
        ));
    }
}
