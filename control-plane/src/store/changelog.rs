//! Reading and compacting the change log (big-endian revision → change JSON, server
//! specs sealed: see `server_codec.rs`).

use super::open::{Trees, META_COMPACTED};
use super::records::ChangeRecord;
use super::server_codec::{self, Keys};
use super::writer::Shared;
use super::StoreError;
use std::sync::atomic::Ordering;

impl Trees {
    /// Removes change records, keeping the last `keep_last` published ones. Returns how
    /// many were removed.
    pub(super) fn compact(&self, shared: &Shared, keep_last: u64) -> Result<u64, StoreError> {
        let upto = shared
            .published
            .load(Ordering::SeqCst)
            .saturating_sub(keep_last);
        self.compact_through(shared, upto)
    }

    /// Removes change records written before `cutoff_ms` (Unix ms). Returns how many were
    /// removed. Records without a write time (from before times were kept) go only when
    /// a later record is old enough.
    pub(super) fn compact_older_than(
        &self,
        shared: &Shared,
        cutoff_ms: u64,
    ) -> Result<u64, StoreError> {
        let published = shared.published.load(Ordering::SeqCst);
        let from = shared.compacted_through.load(Ordering::SeqCst) + 1;
        let mut upto = None;
        for entry in self
            .changelog_at
            .range(from.to_be_bytes()..=published.to_be_bytes())
        {
            let (key, value) = entry?;
            let at = <[u8; 8]>::try_from(value.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Decode("change time is not 8 bytes".into()))?;
            if at >= cutoff_ms {
                break;
            }
            upto = Some(
                <[u8; 8]>::try_from(key.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Decode("change log key is not 8 bytes".into()))?,
            );
        }
        match upto {
            Some(upto) => self.compact_through(shared, upto),
            None => Ok(0),
        }
    }

    /// Removes every change record at or below `upto` (never above the published revision).
    fn compact_through(&self, shared: &Shared, upto: u64) -> Result<u64, StoreError> {
        let upto = upto.min(shared.published.load(Ordering::SeqCst));
        if upto <= shared.compacted_through.load(Ordering::SeqCst) {
            return Ok(0);
        }
        // The mark goes first: a reader that sees a missing record also sees the mark,
        // or notices the gap itself (see `changes_since`).
        self.meta.insert(META_COMPACTED, &upto.to_be_bytes())?;
        shared.compacted_through.store(upto, Ordering::SeqCst);
        let mut batch = sled::Batch::default();
        let mut times = sled::Batch::default();
        let mut removed = 0;
        for key in self.changelog.range(..=upto.to_be_bytes()).keys() {
            batch.remove(key?);
            removed += 1;
        }
        for key in self.changelog_at.range(..=upto.to_be_bytes()).keys() {
            times.remove(key?);
        }
        self.changelog.apply_batch(batch)?;
        self.changelog_at.apply_batch(times)?;
        Ok(removed)
    }

    /// Every published change after `after`, or `None` when they cannot all be given
    /// (compacted away, or `after` is ahead of this store).
    pub(super) fn changes_since(
        &self,
        shared: &Shared,
        after: u64,
    ) -> Result<Option<Vec<ChangeRecord>>, StoreError> {
        let published = shared.published.load(Ordering::SeqCst);
        if after > published {
            return Ok(None);
        }
        if after == published {
            return Ok(Some(Vec::new()));
        }
        if after < shared.compacted_through.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let mut out =
            Vec::with_capacity(usize::try_from(published - after).unwrap_or(0).min(1 << 16));
        let mut expected = after + 1;
        for entry in self
            .changelog
            .range((after + 1).to_be_bytes()..=published.to_be_bytes())
        {
            let (key, value) = entry?;
            let revision = <[u8; 8]>::try_from(key.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Decode("change log key is not 8 bytes".into()))?;
            if revision != expected {
                // A compaction ran while we read.
                return Ok(None);
            }
            let change = server_codec::decode_change(&value, &Keys::current(&self.secrets))?;
            out.push(ChangeRecord { revision, change });
            expected += 1;
        }
        if expected != published + 1 {
            return Ok(None);
        }
        Ok(Some(out))
    }
}
