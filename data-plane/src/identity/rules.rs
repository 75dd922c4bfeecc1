//! Access rules: which allow-list entries a verified person gets, from their claims.

use super::verify::Principal;

/// An access rule as the control plane sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDef {
    pub name: String,
    /// The identity provider whose tokens it applies to.
    pub provider: String,
    pub subjects: Vec<String>,
    pub emails: Vec<String>,
    /// Without the `@`.
    pub email_domains: Vec<String>,
    pub groups: Vec<String>,
    /// The allow-list entries it grants (servers, `server__tool`, `*`).
    pub allow: Vec<String>,
}

impl RuleDef {
    /// A rule matches when any one of its selectors does. Emails and domains compare
    /// case-insensitively (mail systems do); subjects and groups exactly.
    pub fn matches(&self, who: &Principal) -> bool {
        if *self.provider != *who.provider {
            return false;
        }
        if self.subjects.contains(&who.subject) {
            return true;
        }
        if self.groups.iter().any(|g| who.groups.contains(g)) {
            return true;
        }
        let Some(email) = &who.email else {
            return false;
        };
        if self.emails.iter().any(|e| e.eq_ignore_ascii_case(email)) {
            return true;
        }
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        self.email_domains
            .iter()
            .any(|d| d.trim_start_matches('@').eq_ignore_ascii_case(domain))
    }
}

/// The union of what the matching rules allow: sorted, de-duplicated (the interning key).
pub fn granted(rules: &[RuleDef], who: &Principal) -> Vec<String> {
    let mut out: Vec<String> = rules
        .iter()
        .filter(|r| r.matches(who))
        .flat_map(|r| r.allow.iter().cloned())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}
