//! Support for Canopy's fuzz harnesses: property tests (proptest, stable toolchain) that live
//! beside the code they fuzz and run with `cargo test` —
//!
//! * `data-plane/src/http/tests/fuzz.rs`: the JSON-RPC envelope, the header checks and the
//!   whole `/mcp` request path;
//! * `data-plane/src/cache/fuzz.rs`: the `--cache-file` reader;
//! * `cli/src/conf_file/fuzz.rs`: the `-c` files of `register`, `create mcp-client`, `create user`.
//!
//! Each harness first replays its checked-in corpus (`testing/fuzz/corpus/<target>/`, one
//! input per file: the cases from issue 17 and every input that once failed), then runs
//! [`cases`] generated inputs, most of them mutations of the corpus. CI runs the default
//! count; `CANOPY_FUZZ_CASES=100000 cargo test -p canopy-data-plane fuzz` runs longer.
//! A failing input is printed (shrunk); add it to the corpus so it is replayed for good.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use std::path::PathBuf;

/// Generated inputs per property when `CANOPY_FUZZ_CASES` is not set.
pub const DEFAULT_CASES: u32 = 256;
pub const CASES_ENV: &str = "CANOPY_FUZZ_CASES";

/// Generated inputs per property: `CANOPY_FUZZ_CASES`, else [`DEFAULT_CASES`].
pub fn cases() -> u32 {
    std::env::var(CASES_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// The proptest configuration of every harness: [`cases`] inputs, no regression files
/// written into the source tree (failing inputs go into the corpus by hand).
pub fn config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    }
}

/// One corpus input.
#[derive(Debug, Clone)]
pub struct Seed {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The checked-in inputs of `target`, sorted by file name.
pub fn corpus(target: &str) -> Vec<Seed> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("fuzz corpus {}: {e}", dir.display()));
    let mut seeds: Vec<Seed> = entries
        .map(|entry| {
            let path = entry
                .unwrap_or_else(|e| panic!("fuzz corpus {}: {e}", dir.display()))
                .path();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("fuzz corpus {}: {e}", path.display()));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Seed { name, bytes }
        })
        .collect();
    seeds.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!seeds.is_empty(), "fuzz corpus {} is empty", dir.display());
    seeds
}

/// Fragments that matter to JSON and HTTP header parsers, spliced in by [`mutated`].
const DICTIONARY: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"-0",
    b"1e999",
    b"18446744073709551616",
    b"0.5",
    b"\"jsonrpc\":\"2.0\"",
    b"\"id\":",
    b"\"method\":",
    b"\"params\":",
    b"\"_meta\":{}",
    b"Bearer ",
    b"bearer ",
    b"=?base64?",
    b"?=",
    b" ",
    b"\t",
    b"\r\n",
    b"\xff",
    b"\xc3\xa9",
    b"\xe2\x80\x8b",
];

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Splice(Index, Index),
    Repeat(Index, Index, u8),
    Remove(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, d)| Mutation::Splice(i, d)),
        (any::<Index>(), any::<Index>(), 2u8..64).prop_map(|(i, l, n)| Mutation::Repeat(i, l, n)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, l)| Mutation::Remove(i, l)),
    ]
}

fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let at = |i: &Index, len: usize| i.index(len + 1);
    match m {
        Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len())),
        Mutation::Flip(i, x) => {
            if !bytes.is_empty() {
                let p = i.index(bytes.len());
                bytes[p] ^= x;
            }
        }
        Mutation::Insert(i, b) => {
            let p = at(i, bytes.len());
            bytes.splice(p..p, b.iter().copied());
        }
        Mutation::Splice(i, d) => {
            let p = at(i, bytes.len());
            let word = DICTIONARY[d.index(DICTIONARY.len())];
            bytes.splice(p..p, word.iter().copied());
        }
        Mutation::Repeat(i, l, n) => {
            let p = at(i, bytes.len());
            let end = (p + at(l, 16)).min(bytes.len());
            let piece = bytes[p..end].to_vec();
            for _ in 1..*n {
                bytes.splice(end..end, piece.iter().copied());
            }
        }
        Mutation::Remove(i, l) => {
            let p = at(i, bytes.len());
            let end = (p + at(l, 16)).min(bytes.len());
            bytes.drain(p..end);
        }
    }
    bytes
}

/// A corpus input with up to four random mutations (truncations, bit flips, insertions,
/// dictionary splices, repeats, removals).
pub fn mutated(seeds: &[Seed]) -> impl Strategy<Value = Vec<u8>> {
    let seeds: Vec<Vec<u8>> = seeds.iter().map(|s| s.bytes.clone()).collect();
    (
        prop::sample::select(seeds),
        prop::collection::vec(mutation(), 0..4),
    )
        .prop_map(|(seed, ms)| ms.iter().fold(seed, apply))
}

/// Arbitrary JSON text: nested objects and arrays of strings (any Unicode), numbers, bools
/// and nulls.
pub fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        any::<String>().prop_map(|s| quote(&s)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((any::<String>(), inner), 0..6).prop_map(|kv| {
                let members: Vec<String> = kv
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", quote(k)))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// `s` as a JSON string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn quote_makes_json_strings() {
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
    }

    #[test]
    fn mutations_stay_near_their_seed() {
        let seeds = vec![Seed {
            name: "s".into(),
            bytes: b"{\"a\":1}".to_vec(),
        }];
        let mut runner = TestRunner::default();
        let strategy = mutated(&seeds);
        let mut changed = 0;
        for _ in 0..200 {
            let v = strategy.new_tree(&mut runner).map(|t| t.current());
            if let Ok(v) = v {
                assert!(v.len() <= 7 + 4 * 64 * 16 + 4 * 64);
                changed += usize::from(v != seeds[0].bytes);
            }
        }
        assert!(changed > 100, "most inputs are mutated: {changed}");
    }
}
