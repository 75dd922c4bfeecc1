//! Fuzz harness (proptest; see `testing/fuzz`) for the `-c` files of `register`,
//! `create mcp-client` and `create user`: the checked-in corpus, then mutations of it.
//! Properties: no input panics; every error is one bounded line that names the file;
//! valid definitions come back as written.

use super::*;
use canopy_fuzz::{config, corpus, mutated, Seed};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use std::fs;

/// An error is the path, ": " and at most this many characters of message.
const MAX_ERROR_CHARS: usize = MAX_MESSAGE_CHARS + 40;

type Loader = fn(&Path) -> Result<(), ConfFileError>;

fn check(dir: &Path, bytes: &[u8], load: Loader) -> Result<(), TestCaseError> {
    let path = dir.join("def.json");
    fs::write(&path, bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    if let Err(e) = load(&path) {
        let text = e.to_string();
        let named = format!("{}: ", path.display());
        let message = text
            .strip_prefix(&named)
            .or_else(|| text.strip_prefix(&format!("cannot read {named}")))
            .ok_or_else(|| TestCaseError::fail(format!("error does not name the file: {text}")))?;
        prop_assert!(
            message.chars().count() <= MAX_ERROR_CHARS,
            "error of {} characters",
            message.chars().count()
        );
        prop_assert!(
            !message.chars().any(char::is_control),
            "control characters in the error: {message:?}"
        );
    }
    Ok(())
}

/// Replays `target`'s corpus (and some oversized inputs), then fuzzes mutations of it.
fn fuzz(target: &str, load: Loader) {
    let dir = tempfile::tempdir().unwrap();
    let mut seeds = corpus(target);
    seeds.push(Seed {
        name: "oversized name".into(),
        bytes: format!(r#"{{"name":"{}"}}"#, "n".repeat(3 << 20)).into_bytes(),
    });
    seeds.push(Seed {
        name: "oversized unknown field".into(),
        bytes: format!(r#"{{"{}":1}}"#, "k".repeat(3 << 20)).into_bytes(),
    });
    for seed in &seeds {
        if let Err(e) = check(dir.path(), &seed.bytes, load) {
            panic!("{target} corpus input {}: {e}", seed.name);
        }
    }
    let mut runner = TestRunner::new(config());
    if let Err(e) = runner.run(&mutated(&seeds[..seeds.len() - 2]), |bytes| {
        check(dir.path(), &bytes, load)
    }) {
        panic!("{target}: {e}");
    }
}

#[test]
fn fuzz_client_files() {
    fuzz("conf-client", |p| load_client(p).map(drop));
}

#[test]
fn fuzz_user_files() {
    fuzz("conf-user", |p| load_user(p).map(drop));
}

#[test]
fn fuzz_server_files() {
    fuzz("conf-server", |p| load_server(p).map(drop));
}

fn visible_ascii(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::char::range('!', '~'), len).prop_map(String::from_iter)
}

fn name() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        prop::char::range('a', 'z'),
        prop::char::range('0', '9'),
        Just('-')
    ];
    (prop::char::range('a', 'z'), prop::collection::vec(c, 0..20))
        .prop_map(|(first, rest)| std::iter::once(first).chain(rest).collect())
}

#[test]
fn valid_definitions_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("def.json");
    let mut runner = TestRunner::new(config());
    let client = (
        name(),
        any::<String>(),
        prop::collection::vec(name(), 0..5),
        visible_ascii(16..64),
    );
    let outcome = runner.run(&client, |(name, description, allowed, token)| {
        let file = serde_json::json!({
            "name": name, "description": description,
            "allowed_servers": allowed, "access_token": token,
        });
        fs::write(&path, file.to_string()).unwrap();
        let def = load_client(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&def.name, &name);
        prop_assert_eq!(&def.description, &description);
        prop_assert_eq!(&def.access_token, &token);
        let expected = AllowList::from_entries(&allowed).unwrap().to_strings();
        prop_assert_eq!(def.allowed.to_strings(), expected);
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("client definitions: {e}");
    }

    let user = (
        name(),
        prop::option::of(any::<bool>()),
        visible_ascii(16..64),
    );
    let outcome = runner.run(&user, |(name, admin, token)| {
        let mut file = serde_json::json!({"name": name, "access_token": token});
        if let Some(admin) = admin {
            file["role"] = if admin { "admin" } else { "user" }.into();
        }
        fs::write(&path, file.to_string()).unwrap();
        let def = load_user(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&def.name, &name);
        prop_assert_eq!(&def.access_token, &token);
        prop_assert_eq!(matches!(def.role, Role::Admin), admin == Some(true));
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("user definitions: {e}");
    }

    let server = (
        name(),
        name(),
        visible_ascii(1..40),
        prop::collection::btree_map(name(), any::<String>(), 0..4),
        any::<u32>(),
    );
    let outcome = runner.run(&server, |(name, host, bearer, headers, timeout)| {
        let url = format!("https://{host}.example/mcp");
        let file = serde_json::json!({
            "name": name, "url": url, "bearer_token": bearer,
            "headers": headers, "timeout_ms": timeout,
        });
        fs::write(&path, file.to_string()).unwrap();
        let spec = load_server(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&spec.name, &name);
        prop_assert_eq!(&spec.url, &url);
        prop_assert_eq!(&spec.bearer_token, &bearer);
        prop_assert_eq!(
            spec.headers.into_iter().collect::<BTreeMap<_, _>>(),
            headers
        );
        prop_assert_eq!(spec.timeout_ms, u64::from(timeout));
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("server definitions: {e}");
    }
}
