//! Access rules: which servers and tools a person signed in with an identity provider may
//! use, decided from the claims of their token.
//!
//! The control plane (`canopy explain access`) and every data plane call [`evaluate`], so
//! an explanation is exactly what a request gets. Conditions of one kind are alternatives;
//! conditions of different kinds must all hold; a rule without conditions matches nobody.
//! A person's scope is the union of the allow lists of the rules that match.

use crate::scope::AllowList;
use serde_json::{Map, Value};

/// One condition on a token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    /// The subject claim equals this.
    Subject(String),
    /// The `email` claim equals this (case-insensitive).
    Email(String),
    /// The `email` claim's domain equals this (case-insensitive).
    EmailDomain(String),
    /// The groups claim contains this.
    Group(String),
}

impl Condition {
    /// The condition's kind as the CLI names it (`subject`, `email`, `email-domain`, `group`).
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Subject(_) => "subject",
            Condition::Email(_) => "email",
            Condition::EmailDomain(_) => "email-domain",
            Condition::Group(_) => "group",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Condition::Subject(v)
            | Condition::Email(v)
            | Condition::EmailDomain(v)
            | Condition::Group(v) => v,
        }
    }

    fn holds(&self, c: &ClaimView) -> bool {
        match self {
            Condition::Subject(s) => c.subject.as_deref() == Some(s.as_str()),
            Condition::Email(e) => c
                .email
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(e)),
            Condition::EmailDomain(d) => c
                .email
                .as_deref()
                .and_then(|m| m.rsplit_once('@'))
                .is_some_and(|(_, domain)| domain.eq_ignore_ascii_case(d.trim_start_matches('@'))),
            Condition::Group(g) => c.groups.iter().any(|have| have == g),
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.kind(), self.value())
    }
}

/// An access rule of one identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    pub name: String,
    pub conditions: Vec<Condition>,
    pub allow: AllowList,
}

impl AccessRule {
    /// Whether the rule applies to the person these claims describe.
    pub fn matches(&self, claims: &ClaimView) -> bool {
        if self.conditions.is_empty() {
            return false;
        }
        // Every kind present must have one condition that holds.
        ["subject", "email", "email-domain", "group"]
            .iter()
            .all(|kind| {
                let mut of_kind = self
                    .conditions
                    .iter()
                    .filter(|c| c.kind() == *kind)
                    .peekable();
                of_kind.peek().is_none() || of_kind.any(|c| c.holds(claims))
            })
    }
}

/// What access rules look at in a token, read once per token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimView {
    /// The provider's subject claim (a string; absent when missing or not a string).
    pub subject: Option<String>,
    /// `email`, unless `email_verified` is `false`.
    pub email: Option<String>,
    /// The provider's groups claim: a string or an array of strings (other items ignored).
    pub groups: Vec<String>,
}

impl ClaimView {
    /// Reads the claims a rule may test. `subject_claim` and `groups_claim` name top-level
    /// claims, or a dotted path into nested objects (`realm_access.roles`) when no
    /// top-level claim has that exact name.
    pub fn from_claims(
        claims: &Map<String, Value>,
        subject_claim: &str,
        groups_claim: &str,
    ) -> Self {
        let subject = claim(claims, subject_claim)
            .and_then(Value::as_str)
            .map(str::to_owned);
        let verified = claims.get("email_verified").and_then(Value::as_bool) != Some(false);
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .filter(|_| verified)
            .map(str::to_owned);
        let groups = match claim(claims, groups_claim) {
            Some(Value::String(g)) => vec![g.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Self {
            subject,
            email,
            groups,
        }
    }
}

fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// The outcome of the rules for one person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Names of the rules that matched, in the order given.
    pub matched: Vec<String>,
    /// The union of their allow lists (empty = sees nothing).
    pub allow: AllowList,
}

/// Applies `rules` (those of the token's identity provider) to `claims`.
pub fn evaluate<'a>(rules: impl IntoIterator<Item = &'a AccessRule>, claims: &ClaimView) -> Access {
    let matching: Vec<&AccessRule> = rules.into_iter().filter(|r| r.matches(claims)).collect();
    Access {
        matched: matching.iter().map(|r| r.name.clone()).collect(),
        allow: AllowList::union(matching.iter().map(|r| &r.allow)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(v: Value) -> ClaimView {
        ClaimView::from_claims(v.as_object().unwrap(), "sub", "groups")
    }

    fn rule(name: &str, conditions: Vec<Condition>, allow: &str) -> AccessRule {
        AccessRule {
            name: name.into(),
            conditions,
            allow: AllowList::parse_csv(allow).unwrap(),
        }
    }

    #[test]
    fn reads_claims() {
        let v = view(json!({"sub": "u1", "email": "A@Corp.example", "groups": ["eng", 3, "ops"]}));
        assert_eq!(v.subject.as_deref(), Some("u1"));
        assert_eq!(v.groups, vec!["eng", "ops"]);
        let single = view(json!({"sub": 5, "groups": "eng"}));
        assert_eq!(single.subject, None);
        assert_eq!(single.groups, vec!["eng"]);
        let unverified = view(json!({"email": "a@corp.example", "email_verified": false}));
        assert_eq!(unverified.email, None);
        let nested = ClaimView::from_claims(
            json!({"realm_access": {"roles": ["admin"]}})
                .as_object()
                .unwrap(),
            "sub",
            "realm_access.roles",
        );
        assert_eq!(nested.groups, vec!["admin"]);
    }

    #[test]
    fn kinds_and_alternatives() {
        let r = rule(
            "r",
            vec![
                Condition::Group("eng".into()),
                Condition::Group("ops".into()),
                Condition::EmailDomain("corp.example".into()),
            ],
            "github",
        );
        assert!(r.matches(&view(json!({"email": "a@CORP.example", "groups": ["ops"]}))));
        assert!(!r.matches(&view(
            json!({"email": "a@other.example", "groups": ["ops"]})
        )));
        assert!(!r.matches(&view(
            json!({"email": "a@corp.example", "groups": ["sales"]})
        )));
        assert!(!rule("empty", vec![], "*").matches(&view(json!({"sub": "x"}))));
        let by_email = rule("e", vec![Condition::Email("A@corp.example".into())], "x");
        assert!(by_email.matches(&view(json!({"email": "a@corp.example"}))));
        // A domain never matches a longer domain that merely ends the same way.
        let d = rule(
            "d",
            vec![Condition::EmailDomain("corp.example".into())],
            "x",
        );
        assert!(!d.matches(&view(json!({"email": "a@evilcorp.example"}))));
    }

    #[test]
    fn scope_is_the_union_of_matching_rules() {
        let rules = [
            rule(
                "a",
                vec![Condition::Subject("u1".into())],
                "github, jira__search",
            ),
            rule("b", vec![Condition::Group("eng".into())], "jira"),
            rule("c", vec![Condition::Group("sales".into())], "crm"),
        ];
        let access = evaluate(&rules, &view(json!({"sub": "u1", "groups": ["eng"]})));
        assert_eq!(access.matched, vec!["a", "b"]);
        assert_eq!(
            access.allow.to_strings(),
            vec!["github", "jira", "jira__search"]
        );
        let nobody = evaluate(&rules, &view(json!({"sub": "u2"})));
        assert!(nobody.matched.is_empty() && nobody.allow.is_empty());
    }
}
