//! Allow lists: which servers and tools an MCP client (or a user of the CLI) may use.
//!
//! An entry is `*` (everything, including servers registered later), a server name, or a
//! single tool `server__tool`.

use crate::name::{split_qualified, validate_server_name, NameError};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AllowEntry {
    All,
    Server(String),
    Tool { server: String, tool: String },
}

impl std::fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllowEntry::All => f.write_str("*"),
            AllowEntry::Server(s) => f.write_str(s),
            AllowEntry::Tool { server, tool } => write!(f, "{server}__{tool}"),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error("empty entry in allow list (two commas in a row?)")]
    EmptyEntry,
    #[error("invalid allow-list entry '{entry}': {source}")]
    BadEntry { entry: String, source: NameError },
}

impl AllowEntry {
    pub fn parse(raw: &str) -> Result<Self, ScopeError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(ScopeError::EmptyEntry);
        }
        if s == "*" {
            return Ok(AllowEntry::All);
        }
        if let Some((server, tool)) = split_qualified(s) {
            validate_server_name(server).map_err(|source| ScopeError::BadEntry {
                entry: s.to_owned(),
                source,
            })?;
            return Ok(AllowEntry::Tool {
                server: server.to_owned(),
                tool: tool.to_owned(),
            });
        }
        validate_server_name(s).map_err(|source| ScopeError::BadEntry {
            entry: s.to_owned(),
            source,
        })?;
        Ok(AllowEntry::Server(s.to_owned()))
    }
}

/// A parsed, de-duplicated allow list. Empty = no access.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<AllowEntry>,
}

impl AllowList {
    /// Parses a comma-separated list (`"github, jira"`); spaces around commas are ignored
    /// and an empty or all-blank string is the empty list.
    pub fn parse_csv(csv: &str) -> Result<Self, ScopeError> {
        if csv.trim().is_empty() {
            return Ok(Self::default());
        }
        Self::from_entries(csv.split(','))
    }

    pub fn from_entries<I, S>(entries: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = entries
            .into_iter()
            .map(|e| AllowEntry::parse(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        parsed.sort();
        parsed.dedup();
        Ok(Self { entries: parsed })
    }

    /// `*`: every server, including ones registered later.
    pub fn everything() -> Self {
        Self {
            entries: vec![AllowEntry::All],
        }
    }

    pub fn entries(&self) -> &[AllowEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when the list contains `*`.
    pub fn allows_all(&self) -> bool {
        self.entries.iter().any(|e| matches!(e, AllowEntry::All))
    }

    /// May the client call `tool` of `server`?
    pub fn allows_tool(&self, server: &str, tool: &str) -> bool {
        self.entries.iter().any(|e| match e {
            AllowEntry::All => true,
            AllowEntry::Server(s) => s == server,
            AllowEntry::Tool { server: s, tool: t } => s == server && t == tool,
        })
    }

    /// May the client call a listed tool of `server`, given its upstream name `tool` and the
    /// name clients see (`qualified`)? An entry may name the upstream name or, for a
    /// shortened long name, the part of `qualified` after `__`.
    pub fn allows_listed_tool(&self, server: &str, tool: &str, qualified: &str) -> bool {
        if self.allows_tool(server, tool) {
            return true;
        }
        match split_qualified(qualified) {
            Some((_, tail)) if tail != tool => self.allows_tool(server, tail),
            _ => false,
        }
    }

    /// May the client use every tool and prompt of `server`?
    pub fn allows_server(&self, server: &str) -> bool {
        self.entries.iter().any(|e| match e {
            AllowEntry::All => true,
            AllowEntry::Server(s) => s == server,
            AllowEntry::Tool { .. } => false,
        })
    }

    /// May the client see `server` at all (whole server or at least one of its tools)?
    pub fn touches_server(&self, server: &str) -> bool {
        self.entries.iter().any(|e| match e {
            AllowEntry::All => true,
            AllowEntry::Server(s) => s == server,
            AllowEntry::Tool { server: s, .. } => s == server,
        })
    }

    /// Every entry of every list, sorted and de-duplicated (a person's scope from the
    /// access rules that match them).
    pub fn union<'a>(lists: impl IntoIterator<Item = &'a AllowList>) -> Self {
        let mut entries: Vec<AllowEntry> = lists
            .into_iter()
            .flat_map(|l| l.entries.iter().cloned())
            .collect();
        entries.sort();
        entries.dedup();
        Self { entries }
    }

    /// The entries as strings, in a stable order (what listings and the wire carry).
    pub fn to_strings(&self) -> Vec<String> {
        self.entries.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_csv_with_spaces() {
        let l = AllowList::parse_csv("github, jira ,slack").unwrap();
        assert_eq!(l.to_strings(), vec!["github", "jira", "slack"]);
        assert!(AllowList::parse_csv("").unwrap().is_empty());
        assert!(AllowList::parse_csv("   ").unwrap().is_empty());
        assert_eq!(AllowList::parse_csv("a,,b"), Err(ScopeError::EmptyEntry));
    }

    #[test]
    fn evaluates_entries() {
        let l = AllowList::parse_csv("github, jira__search").unwrap();
        assert!(l.allows_tool("github", "anything"));
        assert!(l.allows_tool("jira", "search"));
        assert!(!l.allows_tool("jira", "delete"));
        assert!(l.touches_server("jira"));
        assert!(!l.allows_server("jira"));
        assert!(!l.touches_server("slack"));
        let all = AllowList::parse_csv("*").unwrap();
        assert!(all.allows_all() && all.allows_tool("x", "y") && all.allows_server("later"));
        let none = AllowList::default();
        assert!(!none.allows_tool("github", "x"));
    }

    #[test]
    fn listed_tools_match_upstream_or_shortened_names() {
        let l = AllowList::parse_csv("gh__search, gh__long-ab12cd34").unwrap();
        assert!(l.allows_listed_tool("gh", "search", "gh__search"));
        assert!(l.allows_listed_tool("gh", "long_original_name", "gh__long-ab12cd34"));
        assert!(!l.allows_listed_tool("gh", "delete", "gh__delete"));
        assert!(AllowList::everything().allows_listed_tool("x", "y", "x__y"));
        assert_eq!(AllowList::everything().to_strings(), vec!["*"]);
    }

    #[test]
    fn rejects_bad_entries() {
        assert!(matches!(
            AllowList::parse_csv("bad name"),
            Err(ScopeError::BadEntry { .. })
        ));
        assert!(matches!(
            AllowList::parse_csv("a_"),
            Err(ScopeError::BadEntry { .. })
        ));
    }

    #[test]
    fn deduplicates() {
        let l = AllowList::parse_csv("b, a, b").unwrap();
        assert_eq!(l.to_strings(), vec!["a", "b"]);
    }
}
