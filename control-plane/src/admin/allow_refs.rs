//! Do allow-list entries name something registered? A misspelled entry (`pyhtp`,
//! `pyhttp__ech`) would otherwise be stored silently and grant nothing, so creating or
//! re-scoping a client refuses it (unless forced), and listings mark such entries.

use super::AdminError;
use crate::store::ServerRecord;
use canopy_core::{qualify, split_qualified, AllowEntry};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// How many names an error lists before "…".
const SHOWN: usize = 10;

#[derive(Deserialize)]
struct Named {
    name: String,
}

/// The registered servers and the names an allow entry `server__name` may use for each:
/// a tool's or prompt's upstream name, or the tail of its (possibly shortened) qualified name.
#[derive(Debug, Default)]
pub(super) struct Registered {
    servers: BTreeMap<String, BTreeSet<String>>,
}

impl Registered {
    pub(super) fn from_records(records: &[ServerRecord]) -> Self {
        let servers = records
            .iter()
            .map(|r| {
                let server = &r.spec.name;
                let names = r
                    .tools
                    .iter()
                    .chain(&r.prompts)
                    // A definition without a name cannot be called or allowed.
                    .filter_map(|raw| serde_json::from_str::<Named>(raw.get()).ok())
                    .flat_map(|n| {
                        let qualified = qualify(server, &n.name);
                        let tail = split_qualified(&qualified).map(|(_, t)| t.to_owned());
                        std::iter::once(n.name).chain(tail)
                    })
                    .collect();
                (server.clone(), names)
            })
            .collect();
        Self { servers }
    }

    fn names(&self, entry: &str) -> bool {
        match AllowEntry::parse(entry) {
            Ok(AllowEntry::All) => true,
            Ok(AllowEntry::Server(s)) => self.servers.contains_key(&s),
            Ok(AllowEntry::Tool { server, tool }) => {
                self.servers.get(&server).is_some_and(|t| t.contains(&tool))
            }
            Err(_) => false,
        }
    }

    /// The entries (canonical strings) that name no registered server, tool or prompt.
    pub(super) fn unknown(&self, entries: &[String]) -> Vec<String> {
        entries.iter().filter(|e| !self.names(e)).cloned().collect()
    }

    /// Refuses `entries` naming nothing registered, saying which and what exists.
    pub(super) fn check(&self, entries: &[String]) -> Result<(), AdminError> {
        let unknown = self.unknown(entries);
        let Some(first) = unknown.first() else {
            return Ok(());
        };
        let what = match AllowEntry::parse(first) {
            Ok(AllowEntry::Tool { server, .. }) if self.servers.contains_key(&server) => {
                let names = self.servers.get(&server).map(shown).unwrap_or_default();
                format!("server '{server}' has no tool or prompt by that name; it has: {names}")
            }
            _ if self.servers.is_empty() => "no server is registered yet".to_owned(),
            _ => format!(
                "registered servers: {}",
                shown(&self.servers.keys().cloned().collect())
            ),
        };
        let others = match unknown.len() {
            1 => String::new(),
            n => format!(" (and {} more: {})", n - 1, unknown[1..].join(", ")),
        };
        Err(AdminError::InvalidArgument(format!(
            "allow-list entry '{first}' names no registered server or tool{others}; {what}. \
             Fix the entry, or pass --force to store it anyway (e.g. for a server registered later)"
        )))
    }
}

fn shown(names: &BTreeSet<String>) -> String {
    let mut list: Vec<&str> = names.iter().map(String::as_str).take(SHOWN).collect();
    if names.len() > SHOWN {
        list.push("…");
    }
    if list.is_empty() {
        "nothing".to_owned()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::store::{ServerSpec, Transport};
    use serde_json::value::RawValue;

    fn record(name: &str, tools: &[&str], prompts: &[&str]) -> ServerRecord {
        let raw = |n: &&str| RawValue::from_string(format!(r#"{{"name":"{n}"}}"#)).unwrap();
        ServerRecord {
            spec: ServerSpec {
                name: name.into(),
                transport: Transport::StreamableHttp,
                description: String::new(),
                url: "http://127.0.0.1:1/mcp".into(),
                bearer_token: None,
                headers: Default::default(),
                command: String::new(),
                args: Vec::new(),
                env: Default::default(),
                timeout_ms: 0,
                audit_payload: Default::default(),
            },
            tools: tools.iter().map(raw).collect(),
            prompts: prompts.iter().map(raw).collect(),
            protocol_version: String::new(),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn known_entries_pass() {
        let r = Registered::from_records(&[record("pyhttp", &["echo"], &["greet"])]);
        let ok = strings(&["*", "pyhttp", "pyhttp__echo", "pyhttp__greet"]);
        assert!(r.unknown(&ok).is_empty());
        r.check(&ok).unwrap();
    }

    #[test]
    fn misspelled_server_names_the_entry_and_the_servers() {
        let r = Registered::from_records(&[record("pyhttp", &["echo"], &[])]);
        let e = r.check(&strings(&["pyhtp"])).unwrap_err().to_string();
        assert!(
            e.starts_with("allow-list entry 'pyhtp' names no registered server or tool"),
            "{e}"
        );
        assert!(e.contains("registered servers: pyhttp"), "{e}");
        assert!(e.contains("--force"), "{e}");
    }

    #[test]
    fn misspelled_tool_lists_the_servers_tools() {
        let r = Registered::from_records(&[record("pyhttp", &["echo", "add"], &[])]);
        let e = r
            .check(&strings(&["pyhttp__ech", "zz"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'pyhttp__ech'"), "{e}");
        assert!(e.contains("(and 1 more: zz)"), "{e}");
        assert!(
            e.contains("server 'pyhttp' has no tool or prompt by that name; it has: add, echo"),
            "{e}"
        );
    }

    #[test]
    fn nothing_registered_says_so() {
        let r = Registered::default();
        let e = r.check(&strings(&["gh"])).unwrap_err().to_string();
        assert!(e.contains("no server is registered yet"), "{e}");
        assert_eq!(r.unknown(&strings(&["gh", "*"])), strings(&["gh"]));
    }
}
