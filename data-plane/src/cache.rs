//! `--cache-file`: the applied state on disk, so a restarted data plane can serve while
//! the control plane is unreachable.
//!
//! Format v2: the magic line `canopy-dp-cache v2\n`, when the state was last known current
//! (u64 LE, Unix ms: the write time while synced, else the last contact), the revision
//! (u64 LE; not secret, so tools can tell how current a file is), then the
//! `SnapshotChunk` messages exactly as the control plane sends them — so loading is the
//! snapshot path again — each sealed (XChaCha20-Poly1305, `canopy_core::sealed`) and
//! framed as `u32 LE length ‖ sealed chunk`. A chunk's associated data is the header and
//! its index, so chunks cannot be reordered, dropped or moved between files unnoticed.
//! The chunks hold the token-hash key and the upstream specs with their credentials; the
//! sealing key is the file `<cache-file>.key` (see `cache/key.rs`), kept beside the cache
//! so that a copy of the cache alone (a backup, a shared volume) reveals nothing.
//!
//! Version 1 (plaintext chunks, written by earlier versions) is still read; the next write
//! replaces it with version 2. The file is written to a fresh temporary file (random name,
//! `O_EXCL`, mode 0600) in the same directory and renamed over the cache.

#[cfg(test)]
mod fuzz;
mod key;

use canopy_core::SealingKey;
use canopy_proto::v1 as pb;
use prost::Message;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

use crate::app::DataPlane;
use crate::state::{ApplyError, SnapshotBuilder, State};

/// Plaintext chunks (earlier versions): read only.
const MAGIC_V1: &[u8] = b"canopy-dp-cache v1\n";
const MAGIC: &[u8] = b"canopy-dp-cache v2\n";
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
    #[error("cache key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("cache file {path} does not open with {key}: {source}")]
    Sealed {
        path: PathBuf,
        key: PathBuf,
        source: canopy_core::SealError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Associated data of chunk `index`: the file header and the index.
fn chunk_aad(header: &Header, index: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(MAGIC.len() + 24);
    aad.extend_from_slice(MAGIC);
    aad.extend_from_slice(&header.written_at.to_le_bytes());
    aad.extend_from_slice(&header.revision.to_le_bytes());
    aad.extend_from_slice(&index.to_le_bytes());
    aad
}

/// What a file says in the clear.
#[derive(Clone, Copy)]
struct Header {
    written_at: u64,
    /// Only in v2 files.
    revision: u64,
}

/// Writes the applied state; returns the revision written (`None` = no state yet).
pub fn write(state: &State, path: &Path) -> Result<Option<u64>, CacheError> {
    // Copy out what the file needs (Arc clones) and release the writer lock before any
    // encoding or I/O, so applying a revocation never waits on the disk.
    let last_contact = state.status.last_contact_ms();
    let (revision, mode, hash_key, clients, mut servers) = {
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
    let sealing = key::load_or_create(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = format!(
        ".{}.",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    // A random name created with O_EXCL (which never follows a symlink), mode 0600: a file
    // or link planted in a shared directory cannot receive the state.
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io(dir))?;
    let mut out = BufWriter::new(tmp);
    let result = (|| -> std::io::Result<()> {
        out.write_all(MAGIC)?;
        // When this state was last known current: now while synced, else the last contact
        // (a restart from this file must not look fresher than the state is).
        out.write_all(&last_contact.to_le_bytes())?;
        out.write_all(&revision.to_le_bytes())?;
        let header = Header {
            written_at: last_contact,
            revision,
        };
        let mut chunks = clients.chunks(CLIENTS_PER_CHUNK).peekable();
        let mut first = true;
        let mut index = 0u64;
        loop {
            let batch = chunks.next().unwrap_or(&[]);
            let chunk = pb::SnapshotChunk {
                revision,
                first,
                last: chunks.peek().is_none(),
                mode: if first { mode.to_proto() as i32 } else { 0 },
                token_hash_key: if first { hash_key.to_vec() } else { Vec::new() },
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
            let sealed = sealing
                .seal(&chunk_aad(&header, index), &chunk.encode_to_vec())
                .map_err(std::io::Error::other)?;
            let len = u32::try_from(sealed.len()).map_err(std::io::Error::other)?;
            out.write_all(&len.to_le_bytes())?;
            out.write_all(&sealed)?;
            first = false;
            index += 1;
            if chunk.last {
                break;
            }
        }
        out.flush()?;
        out.get_ref().as_file().sync_all()
    })();
    // On error the temporary file is removed when dropped.
    result.map_err(io(path))?;
    let tmp = out.into_inner().map_err(|e| CacheError::Io {
        path: path.to_owned(),
        source: e.into_error(),
    })?;
    tmp.persist(path).map_err(|e| CacheError::Io {
        path: path.to_owned(),
        source: e.error,
    })?;
    // Makes the rename itself durable; best effort (not every filesystem allows it).
    let _ = File::open(dir).and_then(|d| d.sync_all());
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
    let (sealing, rest) = if let Some(rest) = data.strip_prefix(MAGIC) {
        (Some(key::load(path)?), rest)
    } else if let Some(rest) = data.strip_prefix(MAGIC_V1) {
        (None, rest)
    } else {
        return Err(CacheError::Format(path.to_owned()));
    };
    let sealed = sealing.is_some();
    let (header, mut chunks) = read_chunks(path, rest, sealing.as_ref())?;
    let apply = |source| CacheError::Apply {
        path: path.to_owned(),
        source,
    };
    let mut builder: Option<SnapshotBuilder> = None;
    for chunk in chunks.by_ref() {
        let chunk = chunk?;
        if chunk.first {
            builder = Some(SnapshotBuilder::new(&chunk).map_err(apply)?);
        }
        let b = builder
            .as_mut()
            .ok_or_else(|| decode_error(path, "no first chunk"))?;
        if b.add(chunk).map_err(apply)? {
            break;
        }
    }
    let b = builder.ok_or_else(|| decode_error(path, "empty"))?;
    if !b.is_complete() {
        return Err(decode_error(path, "truncated"));
    }
    if chunks.next().is_some() {
        return Err(decode_error(path, "data after the last chunk"));
    }
    if sealed && b.revision() != header.revision {
        return Err(decode_error(path, "header and snapshot revisions differ"));
    }
    let rev = state.finish_snapshot(b).map_err(apply)?;
    // Staleness counts from when this state was last known good.
    state.status.set_last_contact(header.written_at);
    Ok(Some(rev))
}

fn decode_error(path: &Path, reason: impl Into<String>) -> CacheError {
    CacheError::Decode {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// The header and the chunks after it: opened (v2) or as they are (v1).
fn read_chunks<'a>(
    path: &'a Path,
    rest: &'a [u8],
    sealing: Option<&'a SealingKey>,
) -> Result<
    (
        Header,
        impl Iterator<Item = Result<pb::SnapshotChunk, CacheError>> + 'a,
    ),
    CacheError,
> {
    let format = || CacheError::Format(path.to_owned());
    let (ts, mut buf) = rest.split_first_chunk::<8>().ok_or_else(format)?;
    let written_at = u64::from_le_bytes(*ts);
    let mut revision = 0;
    if sealing.is_some() {
        let (rev, after) = buf.split_first_chunk::<8>().ok_or_else(format)?;
        revision = u64::from_le_bytes(*rev);
        buf = after;
    }
    let header = Header {
        written_at,
        revision,
    };
    let aad_header = header;
    let mut index = 0u64;
    let chunks = std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let Some(sealing) = sealing else {
            return Some(
                pb::SnapshotChunk::decode_length_delimited(&mut buf)
                    .map_err(|e| decode_error(path, e.to_string())),
            );
        };
        let Some((len, rest)) = buf.split_first_chunk::<4>() else {
            buf = &[];
            return Some(Err(decode_error(path, "truncated chunk length")));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            buf = &[];
            return Some(Err(decode_error(path, "truncated chunk")));
        }
        let (sealed, rest) = rest.split_at(len);
        buf = rest;
        let opened = sealing
            .open(&chunk_aad(&aad_header, index), sealed)
            .map_err(|source| CacheError::Sealed {
                path: path.to_owned(),
                key: key::path_for(path),
                source,
            });
        index += 1;
        Some(opened.and_then(|plain| {
            pb::SnapshotChunk::decode(plain.as_slice())
                .map_err(|e| decode_error(path, e.to_string()))
        }))
    });
    Ok((header, chunks))
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
    use std::fs;

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn round_trip_keeps_hashes_scopes_and_servers_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.cache");
        let s = State::new(Arc::new(Metrics::default()));
        assert_eq!(write(&s, &path).unwrap(), None);
        let clients = (0..5000)
            .map(|i| client(&format!("c{i}"), &format!("token-{i:012}"), &["gh"]))
            .collect();
        let mut gh = server("gh", "http://x", &["search"]);
        if let Some(spec) = gh.spec.as_mut() {
            spec.bearer_token = "bearer-CACHE-SECRET".into();
            spec.headers = [("X-Api-Key".to_owned(), "header-CACHE-SECRET".to_owned())].into();
        }
        install(&s, snapshot(42, clients, vec![gh]));
        assert_eq!(write(&s, &path).unwrap(), Some(42));
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(&key::path_for(&path)), 0o600);
        let raw = fs::read(&path).unwrap();
        assert!(!contains(&raw, b"token-000000000001"));
        assert!(!contains(&raw, b"CACHE-SECRET"));
        assert!(!contains(&raw, b"c4999"), "client names are sealed too");
        // Nothing but the cache and its key is left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);

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

        // Without its key the cache does not load (and says why); the next write
        // starts a new key and file.
        fs::remove_file(key::path_for(&path)).unwrap();
        let u = State::new(Arc::new(Metrics::default()));
        let err = load(&u, &path).unwrap_err();
        assert!(err.to_string().contains("state.cache.key"), "{err}");
        assert_eq!(write(&s, &path).unwrap(), Some(42));
        assert_eq!(load(&u, &path).unwrap(), Some(42));
    }

    #[test]
    fn plaintext_files_of_earlier_versions_load_and_are_rewritten_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.cache");
        let mut gh = server("gh", "http://x", &["search"]);
        if let Some(spec) = gh.spec.as_mut() {
            spec.bearer_token = "bearer-CACHE-SECRET".into();
        }
        let chunk = snapshot(7, vec![client("a", "token-aaaaaaaaaaaa", &["*"])], vec![gh]);
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(&1u64.to_le_bytes());
        v1.extend_from_slice(&chunk.encode_length_delimited_to_vec());
        fs::write(&path, v1).unwrap();
        let s = State::new(Arc::new(Metrics::default()));
        assert_eq!(load(&s, &path).unwrap(), Some(7));
        assert_eq!(write(&s, &path).unwrap(), Some(7));
        let raw = fs::read(&path).unwrap();
        assert!(raw.starts_with(MAGIC) && !contains(&raw, b"CACHE-SECRET"));
    }

    #[test]
    fn a_planted_link_at_the_old_temporary_name_receives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let victim = elsewhere.path().join("victim");
        fs::write(&victim, b"").unwrap();
        let path = dir.path().join("state.cache");
        // The name earlier versions wrote to, predictable from the process id.
        let old_tmp = dir
            .path()
            .join(format!(".state.cache.tmp{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
        let s = State::new(Arc::new(Metrics::default()));
        install(
            &s,
            snapshot(3, vec![client("a", "token-aaaaaaaaaaaa", &["*"])], vec![]),
        );
        assert_eq!(write(&s, &path).unwrap(), Some(3));
        assert_eq!(fs::read(&victim).unwrap(), b"");
        assert!(fs::symlink_metadata(&old_tmp).unwrap().is_symlink());
        assert_eq!(mode_of(&path), 0o600);
        // The key file is not created through a planted link either.
        let other = dir.path().join("other.cache");
        std::os::unix::fs::symlink(&victim, key::path_for(&other)).unwrap();
        assert!(write(&s, &other).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"");
    }

    #[test]
    fn missing_and_damaged_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::new(Arc::new(Metrics::default()));
        assert_eq!(load(&s, &dir.path().join("none")).unwrap(), None);
        let bad = dir.path().join("bad");
        fs::write(&bad, b"hello").unwrap();
        assert!(matches!(load(&s, &bad), Err(CacheError::Format(_))));
        let mut trunc = MAGIC_V1.to_vec();
        trunc.extend_from_slice(&0u64.to_le_bytes());
        trunc.extend_from_slice(&[0x80]);
        fs::write(&bad, trunc).unwrap();
        assert!(load(&s, &bad).is_err());
        assert!(!s.has_state());
        // A sealed file cut short.
        install(
            &s,
            snapshot(3, vec![client("a", "token-aaaaaaaaaaaa", &["*"])], vec![]),
        );
        let good = dir.path().join("good");
        write(&s, &good).unwrap();
        let whole = fs::read(&good).unwrap();
        fs::write(&good, &whole[..whole.len() - 5]).unwrap();
        let t = State::new(Arc::new(Metrics::default()));
        assert!(load(&t, &good).is_err());
        assert!(!t.has_state());
    }
}
