//! `--cache-file`: the applied state on disk, so a restarted data plane can serve while
//! the control plane is unreachable.
//!
//! Format: the magic line `canopy-dp-cache v1\n`, when the state was last known current
//! (u64 LE, Unix ms: the write time while synced, else the last contact),
//! then length-delimited `SnapshotChunk` messages exactly as the control plane sends
//! them — so loading is the snapshot path again. Holds token hashes only, the
//! token-hash key and the upstream specs (which include upstream credentials): the
//! file is created with mode 0600 and replaced atomically (temp file + rename).

use canopy_proto::v1 as pb;
use prost::Message;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

use crate::app::DataPlane;
use crate::state::{ApplyError, SnapshotBuilder, State};

const MAGIC: &[u8] = b"canopy-dp-cache v1\n";
const CLIENTS_PER_CHUNK: usize = 4096;
/// Changes arriving within this window are written once.
const DEBOUNCE: Duration = Duration::from_millis(500);

#[derive(Debug, Error)]
pub enum CacheError {
    #[error("cache file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cache file {0} is not a Canopy data-plane cache")]
    Format(PathBuf),
    #[error("cache file {path} is damaged: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("cache file {path}: {source}")]
    Apply { path: PathBuf, source: ApplyError },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes the applied state; returns the revision written (`None` = no state yet).
pub fn write(state: &State, path: &Path) -> Result<Option<u64>, CacheError> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    // Copy out what the file needs (Arc clones) and release the writer lock before any
    // encoding or I/O, so applying a revocation never waits on the disk.
    let last_contact = state.status.last_contact_ms();
    let (revision, mode, key, clients, mut servers) = {
        let guard = state.writer();
        let Some(w) = guard.as_ref() else {
            return Ok(None);
        };
        let clients: Vec<_> = w.clients.values().cloned().collect();
        let servers: Vec<_> = w.servers.values().map(|s| s.source.clone()).collect();
        (w.revision, w.mode, w.key, clients, servers)
    };
    // Read after the writer lock is released: a change applied in between only makes the
    // identity sets newer than `revision`, and the backlog replays full values on resume.
    let mut identity = state.identities.sources();
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let file = opts.open(&tmp).map_err(io(&tmp))?;
    let mut out = BufWriter::new(file);
    let result = (|| -> std::io::Result<()> {
        out.write_all(MAGIC)?;
        // When this state was last known current: now while synced, else the last contact
        // (a restart from this file must not look fresher than the state is).
        out.write_all(&last_contact.to_le_bytes())?;
        let mut chunks = clients.chunks(CLIENTS_PER_CHUNK).peekable();
        let mut first = true;
        loop {
            let batch = chunks.next().unwrap_or(&[]);
            let chunk = pb::SnapshotChunk {
                revision,
                first,
                last: chunks.peek().is_none(),
                mode: if first { mode.to_proto() as i32 } else { 0 },
                token_hash_key: if first { key.to_vec() } else { Vec::new() },
                clients: batch
                    .iter()
                    .map(|c| pb::ClientState {
                        name: c.name.to_string(),
                        tokens: c
                            .tokens
                            .as_slice()
                            .iter()
                            .map(|t| pb::TokenHash {
                                hash: t.hash.0.to_vec(),
                                expires_at_ms: t.expires_at_ms,
                            })
                            .collect(),
                        allowed: c.scope.allow().to_strings(),
                    })
                    .collect(),
                servers: if first {
                    std::mem::take(&mut servers)
                } else {
                    Vec::new()
                },
                total_clients: if first { clients.len() as u64 } else { 0 },
                encoded_clients: Vec::new(),
                identity_providers: std::mem::take(&mut identity.providers),
                access_rules: std::mem::take(&mut identity.rules),
                revoked_subjects: std::mem::take(&mut identity.revoked),
            };
            out.write_all(&chunk.encode_length_delimited_to_vec())?;
            first = false;
            if chunk.last {
                break;
            }
        }
        out.flush()?;
        out.get_ref().sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(CacheError::Io {
            path: tmp,
            source: e,
        });
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Makes the rename itself durable; best effort (not every filesystem allows it).
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(Some(revision))
}

/// Loads a cache file into `state`. Returns the revision, or `None` if there is no file.
pub fn load(state: &State, path: &Path) -> Result<Option<u64>, CacheError> {
    let mut data = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut data).map_err(io(path))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CacheError::Io {
                path: path.to_owned(),
                source: e,
            })
        }
    };
    let rest = data
        .strip_prefix(MAGIC)
        .ok_or_else(|| CacheError::Format(path.to_owned()))?;
    if rest.len() < 8 {
        return Err(CacheError::Format(path.to_owned()));
    }
    let (ts, mut buf) = rest.split_at(8);
    let written_at = u64::from_le_bytes(
        <[u8; 8]>::try_from(ts).map_err(|_| CacheError::Format(path.to_owned()))?,
    );
    let decode = |reason: String| CacheError::Decode {
        path: path.to_owned(),
        reason,
    };
    let apply = |source| CacheError::Apply {
        path: path.to_owned(),
        source,
    };
    let mut builder: Option<SnapshotBuilder> = None;
    while !buf.is_empty() {
        let chunk = pb::SnapshotChunk::decode_length_delimited(&mut buf)
            .map_err(|e| decode(e.to_string()))?;
        if chunk.first {
            builder = Some(SnapshotBuilder::new(&chunk).map_err(apply)?);
        }
        let b = builder
            .as_mut()
            .ok_or_else(|| decode("no first chunk".into()))?;
        if b.add(chunk).map_err(apply)? {
            break;
        }
    }
    let b = builder.ok_or_else(|| decode("empty".into()))?;
    if !b.is_complete() {
        return Err(decode("truncated".into()));
    }
    let rev = state.finish_snapshot(b).map_err(apply)?;
    // Staleness counts from when this state was last known good.
    state.status.set_last_contact(written_at);
    Ok(Some(rev))
}

/// Writes the cache after changes, at most once per debounce window.
pub async fn run_writer(dp: Arc<DataPlane>, path: PathBuf) {
    loop {
        dp.state.changed.notified().await;
        tokio::time::sleep(DEBOUNCE).await;
        flush(&dp, &path).await;
    }
}

pub async fn flush(dp: &Arc<DataPlane>, path: &Path) {
    let (dp2, p) = (dp.clone(), path.to_owned());
    match tokio::task::spawn_blocking(move || write(&dp2.state, &p)).await {
        Ok(Ok(Some(rev))) => tracing::debug!(revision = rev, "cache file written"),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not write the cache file"),
        Err(e) => tracing::warn!(error = %e, "cache writer task failed"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::state::tests_support::{client, install, server, snapshot};

    #[test]
    fn round_trip_keeps_hashes_scopes_and_servers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.cache");
        let s = State::new(Arc::new(Metrics::default()));
        assert_eq!(write(&s, &path).unwrap(), None);
        let clients = (0..5000)
            .map(|i| client(&format!("c{i}"), &format!("token-{i:012}"), &["gh"]))
            .collect();
        install(
            &s,
            snapshot(42, clients, vec![server("gh", "http://x", &["search"])]),
        );
        assert_eq!(write(&s, &path).unwrap(), Some(42));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let raw = fs::read(&path).unwrap();
        assert!(!raw
            .windows(b"token-000000000001".len())
            .any(|w| w == b"token-000000000001"));

        let t = State::new(Arc::new(Metrics::default()));
        assert_eq!(load(&t, &path).unwrap(), Some(42));
        let v = t.load_view().unwrap();
        let c = v
            .tokens
            .lookup_client(&v.hasher.hash("token-000000004999"), 0)
            .unwrap();
        assert_eq!(&*c.name, "c4999");
        assert!(c.scope.allow().allows_server("gh"));
        assert!(v
            .catalog
            .get(crate::state::Kind::Tool, "gh__search")
            .is_some());
        assert_eq!(t.applied_revision(), 42);
    }

    #[test]
    fn missing_and_damaged_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::new(Arc::new(Metrics::default()));
        assert_eq!(load(&s, &dir.path().join("none")).unwrap(), None);
        let bad = dir.path().join("bad");
        fs::write(&bad, b"hello").unwrap();
        assert!(matches!(load(&s, &bad), Err(CacheError::Format(_))));
        let mut trunc = MAGIC.to_vec();
        trunc.extend_from_slice(&0u64.to_le_bytes());
        trunc.extend_from_slice(&[0x80]);
        fs::write(&bad, trunc).unwrap();
        assert!(load(&s, &bad).is_err());
        assert!(!s.has_state());
    }
}
