//! The on-disk form of a server record, and of a change record that carries one.
//!
//! A server's spec holds the upstream's credentials (bearer token, header values, the env
//! of a stdio command, perhaps a URL with a key in it), so the whole spec is sealed with
//! the secrets key (`<data-dir>/secrets.key`, see `open.rs`) and only the name and the
//! discovered catalogue stay readable:
//!
//! ```json
//! {"name":"gh","spec_sealed":"<base64 sealed spec JSON>","tools":[…],"prompts":[…],"protocol_version":"…"}
//! ```
//!
//! The sealed value's associated data is the server's name, so a sealed spec copied onto
//! another server's record does not open. Records written by earlier versions carry a
//! plaintext `spec` instead; they are still read, and [`plan_reseal`] rewrites them sealed
//! when the store opens.

use super::identity::{ProviderRecord, Revocation, RuleRecord};
use super::records::{Change, ClientRecord, Role, ServerRecord, ServerSpec};
use super::StoreError;
use base64::Engine;
use canopy_core::{SealError, SealingKey};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The keys a stored spec may be sealed with: the current one, and during a rotation the
/// previous one (read only; every value is resealed with the current key at open).
pub(super) struct Keys<'a> {
    pub current: &'a SealingKey,
    pub previous: Option<&'a SealingKey>,
}

impl<'a> Keys<'a> {
    pub fn current(current: &'a SealingKey) -> Self {
        Self {
            current,
            previous: None,
        }
    }

    fn for_value(&self, sealed: &[u8]) -> &'a SealingKey {
        match self.previous {
            Some(previous) if !self.current.sealed_this(sealed) && previous.sealed_this(sealed) => {
                previous
            }
            _ => self.current,
        }
    }
}

#[derive(Serialize)]
struct StoredOut<'a> {
    name: &'a str,
    spec_sealed: String,
    tools: &'a [Box<RawValue>],
    prompts: &'a [Box<RawValue>],
    protocol_version: &'a str,
}

#[derive(Deserialize)]
struct StoredIn {
    #[serde(default)]
    name: Option<String>,
    /// Written by versions before sealing.
    #[serde(default)]
    spec: Option<ServerSpec>,
    #[serde(default)]
    spec_sealed: Option<String>,
    tools: Vec<Box<RawValue>>,
    prompts: Vec<Box<RawValue>>,
    protocol_version: String,
}

/// How a change is stored: as [`Change`], except that a server carries its sealed form.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum ServerChangeOut<'a> {
    ServerUpserted(StoredOut<'a>),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChangeIn {
    ClientUpserted(ClientRecord),
    ClientDeleted { name: String },
    ServerUpserted(Box<StoredIn>),
    ServerDeleted { name: String },
    UserUpserted { name: String, role: Role },
    UserDeleted { name: String },
    ProviderUpserted(Box<ProviderRecord>),
    ProviderDeleted { name: String },
    RuleUpserted(RuleRecord),
    RuleDeleted { name: String },
    SubjectRevoked(Revocation),
    SubjectUnrevoked(Revocation),
}

fn aad(name: &str) -> Vec<u8> {
    let mut aad = b"canopy server spec\0".to_vec();
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn sealing_error(name: &str, source: SealError) -> StoreError {
    StoreError::Sealed {
        server: name.to_owned(),
        source,
    }
}

fn json_error(e: serde_json::Error) -> StoreError {
    StoreError::Decode(e.to_string())
}

fn stored_out<'a>(record: &'a ServerRecord, key: &SealingKey) -> Result<StoredOut<'a>, StoreError> {
    let name = &record.spec.name;
    let spec = serde_json::to_vec(&record.spec).map_err(json_error)?;
    let sealed = key
        .seal(&aad(name), &spec)
        .map_err(|e| sealing_error(name, e))?;
    Ok(StoredOut {
        name,
        spec_sealed: B64.encode(sealed),
        tools: &record.tools,
        prompts: &record.prompts,
        protocol_version: &record.protocol_version,
    })
}

pub(super) fn encode(record: &ServerRecord, key: &SealingKey) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&stored_out(record, key)?).map_err(json_error)
}

pub(super) fn decode(raw: &[u8], keys: &Keys) -> Result<ServerRecord, StoreError> {
    let stored: StoredIn = serde_json::from_slice(raw).map_err(json_error)?;
    from_stored(stored, keys)
}

fn from_stored(stored: StoredIn, keys: &Keys) -> Result<ServerRecord, StoreError> {
    let spec = match (stored.spec, stored.spec_sealed, stored.name) {
        (Some(spec), None, _) => spec,
        (None, Some(sealed), Some(name)) => {
            let sealed = B64
                .decode(sealed)
                .map_err(|e| StoreError::Decode(format!("server '{name}': {e}")))?;
            let plain = keys
                .for_value(&sealed)
                .open(&aad(&name), &sealed)
                .map_err(|e| sealing_error(&name, e))?;
            let spec: ServerSpec = serde_json::from_slice(&plain).map_err(json_error)?;
            if spec.name != name {
                return Err(StoreError::Decode(format!(
                    "server '{name}' holds the spec of '{}'",
                    spec.name
                )));
            }
            spec
        }
        _ => {
            return Err(StoreError::Decode(
                "server record has neither a spec nor a sealed spec".into(),
            ))
        }
    };
    Ok(ServerRecord {
        spec,
        tools: stored.tools,
        prompts: stored.prompts,
        protocol_version: stored.protocol_version,
    })
}

pub(super) fn encode_change(change: &Change, key: &SealingKey) -> Result<Vec<u8>, StoreError> {
    match change {
        Change::ServerUpserted(record) => {
            serde_json::to_vec(&ServerChangeOut::ServerUpserted(stored_out(record, key)?))
        }
        other => serde_json::to_vec(other),
    }
    .map_err(json_error)
}

pub(super) fn decode_change(raw: &[u8], keys: &Keys) -> Result<Change, StoreError> {
    Ok(
        match serde_json::from_slice::<ChangeIn>(raw).map_err(json_error)? {
            ChangeIn::ClientUpserted(c) => Change::ClientUpserted(c),
            ChangeIn::ClientDeleted { name } => Change::ClientDeleted { name },
            ChangeIn::ServerUpserted(s) => Change::ServerUpserted(from_stored(*s, keys)?),
            ChangeIn::ServerDeleted { name } => Change::ServerDeleted { name },
            ChangeIn::UserUpserted { name, role } => Change::UserUpserted { name, role },
            ChangeIn::UserDeleted { name } => Change::UserDeleted { name },
            ChangeIn::ProviderUpserted(p) => Change::ProviderUpserted(*p),
            ChangeIn::ProviderDeleted { name } => Change::ProviderDeleted { name },
            ChangeIn::RuleUpserted(r) => Change::RuleUpserted(r),
            ChangeIn::RuleDeleted { name } => Change::RuleDeleted { name },
            ChangeIn::SubjectRevoked(r) => Change::SubjectRevoked(r),
            ChangeIn::SubjectUnrevoked(r) => Change::SubjectUnrevoked(r),
        },
    )
}

/// Whether a stored server record (or server change) is not sealed with the current key:
/// plaintext from an earlier version, or sealed with the previous key.
fn needs_reseal(stored: &StoredIn, key: &SealingKey) -> bool {
    match &stored.spec_sealed {
        None => true,
        Some(sealed) => B64
            .decode(sealed)
            .map(|sealed| !key.sealed_this(&sealed))
            .unwrap_or(false),
    }
}

/// Values to rewrite sealed with the current key (see [`plan_reseal`]).
pub(super) struct Reseal<'t> {
    rewrites: Vec<(&'t sled::Tree, sled::IVec, Vec<u8>)>,
}

impl Reseal<'_> {
    pub fn len(&self) -> usize {
        self.rewrites.len()
    }

    pub fn apply(self) -> Result<(), StoreError> {
        for (tree, k, v) in self.rewrites {
            tree.insert(k, v)?;
        }
        Ok(())
    }
}

/// Finds every server record and server change record that is not sealed with the
/// current key and seals it anew. Every stored spec is opened first, so a value sealed
/// with an unknown key stops the start before anything is written.
pub(super) fn plan_reseal<'t>(
    servers: &'t sled::Tree,
    changelog: &'t sled::Tree,
    keys: &Keys,
) -> Result<Reseal<'t>, StoreError> {
    let mut rewrites = Vec::new();
    for entry in servers.iter() {
        let (k, v) = entry?;
        let stored: StoredIn = serde_json::from_slice(&v).map_err(json_error)?;
        let stale = needs_reseal(&stored, keys.current);
        let record = from_stored(stored, keys)?;
        if stale {
            rewrites.push((servers, k, encode(&record, keys.current)?));
        }
    }
    for entry in changelog.iter() {
        let (k, v) = entry?;
        // Only server changes carry secrets; the others are not parsed.
        if !v.starts_with(b"{\"server_upserted\":") {
            continue;
        }
        let ChangeIn::ServerUpserted(stored) =
            serde_json::from_slice::<ChangeIn>(&v).map_err(json_error)?
        else {
            continue;
        };
        let stale = needs_reseal(&stored, keys.current);
        let record = from_stored(*stored, keys)?;
        if stale {
            let change = Change::ServerUpserted(record);
            rewrites.push((changelog, k, encode_change(&change, keys.current)?));
        }
    }
    Ok(Reseal { rewrites })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::store::Transport;

    fn record() -> ServerRecord {
        ServerRecord {
            spec: ServerSpec {
                name: "gh".into(),
                transport: Transport::StreamableHttp,
                description: String::new(),
                url: "http://127.0.0.1:1/mcp".into(),
                bearer_token: Some("bearer-SECRET".into()),
                headers: [("X-Api-Key".to_owned(), "header-SECRET".to_owned())].into(),
                command: String::new(),
                args: Vec::new(),
                env: Default::default(),
                timeout_ms: 0,
                audit_payload: Default::default(),
            },
            tools: vec![RawValue::from_string(r#"{"name":"search"}"#.into()).unwrap()],
            prompts: Vec::new(),
            protocol_version: "2025-06-18".into(),
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn record_and_change_are_sealed_and_read_back() {
        let key = SealingKey::new([1; 32]);
        let raw = encode(&record(), &key).unwrap();
        assert!(!contains(&raw, b"SECRET"));
        let back = decode(&raw, &Keys::current(&key)).unwrap();
        assert_eq!(back.spec, record().spec);
        assert_eq!(back.tools[0].get(), r#"{"name":"search"}"#);

        let raw = encode_change(&Change::ServerUpserted(record()), &key).unwrap();
        assert!(!contains(&raw, b"SECRET"));
        let Change::ServerUpserted(back) = decode_change(&raw, &Keys::current(&key)).unwrap()
        else {
            panic!("not a server change");
        };
        assert_eq!(back.spec, record().spec);
        let deleted = encode_change(&Change::ServerDeleted { name: "gh".into() }, &key).unwrap();
        assert!(matches!(
            decode_change(&deleted, &Keys::current(&key)).unwrap(),
            Change::ServerDeleted { .. }
        ));
    }

    #[test]
    fn identity_changes_pass_through_the_change_log_codec() {
        use super::super::identity::{Revocation, RuleRecord};
        let key = SealingKey::new([1; 32]);
        let revocation = Revocation {
            idp: "corp".into(),
            subject: "alice".into(),
            revoked_at_ms: 7,
        };
        let rule = RuleRecord {
            name: "eng".into(),
            idp: "corp".into(),
            conditions: Vec::new(),
            allowed: vec!["gh".into()],
        };
        for change in [
            Change::ProviderDeleted {
                name: "corp".into(),
            },
            Change::RuleUpserted(rule),
            Change::RuleDeleted { name: "eng".into() },
            Change::SubjectRevoked(revocation.clone()),
            Change::SubjectUnrevoked(revocation),
        ] {
            let raw = encode_change(&change, &key).unwrap();
            let back = decode_change(&raw, &Keys::current(&key)).unwrap();
            assert_eq!(format!("{back:?}"), format!("{change:?}"));
        }
    }

    #[test]
    fn plaintext_records_of_earlier_versions_are_read_and_resealed() {
        let key = SealingKey::new([1; 32]);
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (servers, changelog) = (db.open_tree("s").unwrap(), db.open_tree("c").unwrap());
        servers
            .insert("gh", serde_json::to_vec(&record()).unwrap())
            .unwrap();
        changelog
            .insert(
                1u64.to_be_bytes(),
                serde_json::to_vec(&Change::ServerUpserted(record())).unwrap(),
            )
            .unwrap();
        let legacy = servers.get("gh").unwrap().unwrap();
        assert_eq!(
            decode(&legacy, &Keys::current(&key)).unwrap().spec,
            record().spec
        );

        let reseal = |keys: &Keys| -> Result<usize, StoreError> {
            let plan = plan_reseal(&servers, &changelog, keys)?;
            let n = plan.len();
            plan.apply()?;
            Ok(n)
        };
        assert_eq!(reseal(&Keys::current(&key)).unwrap(), 2);
        for tree in [&servers, &changelog] {
            let (_, v) = tree.iter().next().unwrap().unwrap();
            assert!(!contains(&v, b"SECRET"));
        }
        assert_eq!(reseal(&Keys::current(&key)).unwrap(), 0);

        // Rotation: sealed with the previous key, resealed with the new one.
        let next = SealingKey::new([2; 32]);
        let rotating = Keys {
            current: &next,
            previous: Some(&key),
        };
        assert_eq!(reseal(&rotating).unwrap(), 2);
        let raw = servers.get("gh").unwrap().unwrap();
        assert_eq!(
            decode(&raw, &Keys::current(&next)).unwrap().spec,
            record().spec
        );

        // Without the key that sealed them, nothing opens, and the error names the server.
        let err = decode(&raw, &Keys::current(&key)).unwrap_err();
        assert!(matches!(err, StoreError::Sealed { .. }), "{err}");
        assert!(err.to_string().contains("'gh'"), "{err}");
        assert!(reseal(&Keys::current(&key)).is_err());
    }

    #[test]
    fn a_sealed_spec_moved_to_another_name_does_not_open() {
        let key = SealingKey::new([1; 32]);
        let raw = encode(&record(), &key).unwrap();
        let moved = String::from_utf8(raw)
            .unwrap()
            .replace(r#""name":"gh""#, r#""name":"other""#);
        assert!(decode(moved.as_bytes(), &Keys::current(&key)).is_err());
    }
}
