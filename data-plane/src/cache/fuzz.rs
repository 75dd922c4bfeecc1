//! Fuzz harness (proptest; see `testing/fuzz`) for the `--cache-file` reader: the
//! checked-in corpus, mutations of it, and mutations of real files of both formats.
//! Properties: no input panics; an error is one bounded line and leaves the state empty;
//! any change to a sealed file is detected (it loads as written or not at all).

use super::*;
use crate::metrics::Metrics;
use crate::state::tests_support::{client, install, server, snapshot};
use canopy_fuzz::{config, corpus, mutated, Seed};
use proptest::test_runner::{TestCaseError, TestRunner};
use std::fs;

/// An error is the path plus at most this much.
const MAX_ERROR_CHARS: usize = 300;

fn state() -> State {
    State::new(Arc::new(Metrics::default()))
}

/// A state with a few clients and a server holding credentials.
fn filled() -> State {
    let s = state();
    let mut gh = server("gh", "http://x", &["search"]);
    if let Some(spec) = gh.spec.as_mut() {
        spec.bearer_token = "bearer-FUZZ".into();
    }
    let clients = (0..5)
        .map(|i| client(&format!("c{i}"), &format!("token-{i:012}"), &["gh"]))
        .collect();
    install(&s, snapshot(9, clients, vec![gh]));
    s
}

/// Loads `bytes` as the cache at `path`: `Ok(Some(revision))`, `Ok(None)` for an error
/// that kept every property.
fn check(path: &Path, bytes: &[u8]) -> Result<Option<u64>, TestCaseError> {
    fs::write(path, bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let s = state();
    match load(&s, path) {
        Ok(rev) => Ok(rev),
        Err(e) => {
            let text = e.to_string();
            let extra = text.chars().count() - path.display().to_string().chars().count();
            if extra > MAX_ERROR_CHARS || text.chars().any(char::is_control) {
                return Err(TestCaseError::fail(format!("unbounded error: {text:?}")));
            }
            if s.has_state() {
                return Err(TestCaseError::fail(format!("state kept after: {text}")));
            }
            Ok(None)
        }
    }
}

fn run(what: &str, seeds: &[Seed], test: impl Fn(Vec<u8>) -> Result<(), TestCaseError>) {
    for seed in seeds {
        if let Err(e) = test(seed.bytes.clone()) {
            panic!("{what} input {}: {e}", seed.name);
        }
    }
    if let Err(e) = TestRunner::new(config()).run(&mutated(seeds), test) {
        panic!("{what}: {e}");
    }
}

#[test]
fn fuzz_cache_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.cache");
    run("cache-file corpus", &corpus("cache-file"), |bytes| {
        check(&path, &bytes).map(drop)
    });

    // Earlier versions' plaintext files: anything may load, nothing may panic.
    let plain = dir.path().join("plain.cache");
    let mut v1 = MAGIC_V1.to_vec();
    v1.extend_from_slice(&1u64.to_le_bytes());
    let mut gh = server("gh", "http://x", &["search"]);
    if let Some(spec) = gh.spec.as_mut() {
        spec.bearer_token = "bearer-FUZZ".into();
    }
    let chunk = snapshot(4, vec![client("a", "token-aaaaaaaaaaaa", &["*"])], vec![gh]);
    v1.extend_from_slice(&chunk.encode_length_delimited_to_vec());
    let seeds = [Seed {
        name: "v1 file".into(),
        bytes: v1,
    }];
    run("v1 cache files", &seeds, |bytes| {
        check(&plain, &bytes).map(drop)
    });

    // Sealed files: every change is detected.
    let sealed = dir.path().join("sealed.cache");
    write(&filled(), &sealed).unwrap();
    let original = fs::read(&sealed).unwrap();
    let seeds = [Seed {
        name: "v2 file".into(),
        bytes: original.clone(),
    }];
    run("sealed cache files", &seeds, |bytes| {
        let loaded = check(&sealed, &bytes)?;
        if bytes == original {
            proptest::prop_assert_eq!(loaded, Some(9));
        } else {
            proptest::prop_assert_eq!(loaded, None, "a changed sealed file loaded");
        }
        Ok(())
    });
}
