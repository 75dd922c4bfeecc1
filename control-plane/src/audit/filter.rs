//! What an `AuditFilter` matches. Every set field must match exactly; a field an event kind
//! does not have (a tool on a change event) does not match it.

use super::index::Field;
use super::AuditError;
use canopy_proto::v1 as pb;
use pb::audit_event::Kind;
use pb::audit_principal::Kind as Who;

/// Kinds as the filter and the CLI name them.
pub(crate) const KINDS: [&str; 4] = ["request", "change", "auth-failure", "gap"];
/// Outcomes as the filter and the CLI name them.
pub(crate) const OUTCOMES: [&str; 4] = ["ok", "error", "denied", "limited"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Error,
    Denied,
    Limited,
}

/// A checked filter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    f: pb::AuditFilter,
    /// Bit per entry of [`KINDS`]; 0 = every kind.
    kinds: u8,
    outcome: Option<Outcome>,
}

pub(crate) fn kind_name(event: &pb::AuditEvent) -> &'static str {
    match event.kind {
        Some(Kind::Request(_)) => KINDS[0],
        Some(Kind::Change(_)) => KINDS[1],
        Some(Kind::AuthFailure(_)) => KINDS[2],
        Some(Kind::Gap(_)) => KINDS[3],
        None => "",
    }
}

impl Filter {
    pub fn new(f: pb::AuditFilter) -> Result<Self, AuditError> {
        let mut kinds = 0u8;
        for k in &f.kinds {
            let i = KINDS.iter().position(|n| n == k).ok_or_else(|| {
                AuditError::InvalidArgument(format!(
                    "unknown event kind '{k}'; one of: {}",
                    KINDS.join(", ")
                ))
            })?;
            kinds |= 1 << i;
        }
        let outcome = match f.outcome.as_str() {
            "" => None,
            "ok" => Some(Outcome::Ok),
            "error" => Some(Outcome::Error),
            "denied" => Some(Outcome::Denied),
            "limited" => Some(Outcome::Limited),
            other => {
                return Err(AuditError::InvalidArgument(format!(
                    "unknown outcome '{other}'; one of: {}",
                    OUTCOMES.join(", ")
                )))
            }
        };
        Ok(Self { f, kinds, outcome })
    }

    /// False when the encoded event cannot match: a value the filter wants exactly does not
    /// occur in its bytes (protobuf stores strings as they are). True means "decode and see".
    pub fn may_match(&self, encoded: &[u8]) -> bool {
        let f = &self.f;
        [
            &f.client,
            &f.subject,
            &f.idp,
            &f.server,
            &f.tool,
            &f.data_plane,
            &f.method,
        ]
        .into_iter()
        .filter(|v| !v.is_empty())
        .all(|v| contains(encoded, v.as_bytes()))
    }

    /// The indexed field and value a query should read the index for, if any: the one
    /// likely to be rarest (a client or subject before a tool, a server, an outcome). Not
    /// `--outcome ok`: most events are, so reading them through the index would be slower
    /// than the scan of the window.
    pub fn index_term(&self) -> Option<(Field, &str)> {
        let f = &self.f;
        [
            (Field::Client, f.client.as_str()),
            (Field::Subject, f.subject.as_str()),
            (Field::Tool, f.tool.as_str()),
            (Field::Server, f.server.as_str()),
        ]
        .into_iter()
        .find(|(_, v)| !v.is_empty())
        .or(match self.outcome {
            Some(Outcome::Ok) | None => None,
            Some(_) => Some((Field::Outcome, f.outcome.as_str())),
        })
    }

    pub fn matches(&self, event: &pb::AuditEvent) -> bool {
        let Some(kind) = &event.kind else {
            return false;
        };
        if self.kinds != 0 {
            let i = KINDS
                .iter()
                .position(|n| *n == kind_name(event))
                .unwrap_or(0);
            if self.kinds & (1 << i) == 0 {
                return false;
            }
        }
        let f = &self.f;
        let principal = match kind {
            Kind::Request(r) => r.principal.as_ref(),
            Kind::Change(c) => c.actor.as_ref(),
            _ => None,
        }
        .and_then(|p| p.kind.as_ref());
        let sso = match principal {
            Some(Who::Sso(s)) => Some(s),
            _ => None,
        };
        let client = match principal {
            Some(Who::McpClient(c)) => Some(c.as_str()),
            _ => None,
        };
        let request = match kind {
            Kind::Request(r) => Some(r),
            _ => None,
        };
        let server = match kind {
            Kind::Request(r) => Some(r.server.as_str()),
            Kind::Change(c) if c.object_kind == "server" => Some(c.object_name.as_str()),
            _ => None,
        };
        let data_plane = match kind {
            Kind::Request(r) => Some(r.data_plane.as_str()),
            Kind::Gap(g) => Some(g.data_plane.as_str()),
            _ => None,
        };
        let method = match kind {
            Kind::Request(r) => Some(r.method.as_str()),
            Kind::Change(c) => Some(c.command.as_str()),
            Kind::AuthFailure(a) => Some(a.command.as_str()),
            Kind::Gap(_) => None,
        };
        let field = |want: &str, have: Option<&str>| want.is_empty() || have == Some(want);
        field(&f.client, client)
            && field(&f.subject, sso.map(|s| s.subject.as_str()))
            && field(&f.idp, sso.map(|s| s.idp.as_str()))
            && field(&f.server, server)
            && (f.tool.is_empty() || request.is_some_and(|r| tool_matches(r, &f.tool)))
            && field(&f.data_plane, data_plane)
            && field(&f.method, method)
            && self.outcome.is_none_or(|want| outcome(kind) == Some(want))
    }
}

/// A request's tool is recorded as the client named it: `server__tool` on `/mcp`, `tool` on
/// `/servers/<server>/mcp`. `--tool` takes the name on the upstream server (what the docs and
/// the help say), so both spellings of that tool match; the recorded name itself does too.
fn tool_matches(r: &pb::McpRequestEvent, want: &str) -> bool {
    r.tool == want || (!r.server.is_empty() && r.tool == canopy_core::qualify(&r.server, want))
}

/// The outcome's name as filters say it (`None`: an event kind without one).
pub(super) fn outcome_name(kind: &Kind) -> Option<&'static str> {
    outcome(kind).map(|o| match o {
        Outcome::Ok => OUTCOMES[0],
        Outcome::Error => OUTCOMES[1],
        Outcome::Denied => OUTCOMES[2],
        Outcome::Limited => OUTCOMES[3],
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn outcome(kind: &Kind) -> Option<Outcome> {
    use pb::AuditOutcome as O;
    match kind {
        Kind::Request(r) => match O::try_from(r.outcome).ok()? {
            O::Ok => Some(Outcome::Ok),
            O::ToolError | O::Error => Some(Outcome::Error),
            O::Denied => Some(Outcome::Denied),
            O::Limited => Some(Outcome::Limited),
            O::Unspecified => None,
        },
        Kind::Change(c) if c.error.is_empty() => Some(Outcome::Ok),
        Kind::Change(_) => Some(Outcome::Error),
        Kind::AuthFailure(_) => Some(Outcome::Denied),
        Kind::Gap(_) => None,
    }
}
