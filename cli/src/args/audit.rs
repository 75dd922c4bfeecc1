//! Command-line types of `canopy audit`.

use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Stored audit events in a time window, newest first, as a table (or one JSON document
    /// with -o json).
    #[command(after_help = "\
Examples:
  canopy audit list                                   # the last hour, newest first
  canopy audit list --since 24h --client ci-bot --outcome denied
  canopy audit list --server github --tool search_repositories --limit 20
  canopy audit list --kind change --since 7d          # who changed what
  canopy audit list --kind auth-failure --since 2026-03-01T00:00:00Z --until 2026-03-02T00:00:00Z
  canopy -o json audit list --subject 00u1abcd --idp corp | jq '.[].\"gen_ai.tool.name\"'

--since and --until take a duration (1h, 30m, 7d: that long ago) or an RFC 3339 time.
Filters match exactly; several filters must all match. JSON field names follow the
OpenTelemetry semantic conventions (mcp.method.name, gen_ai.tool.name, client.address, ...);
see docs/audit.md.")]
    List(AuditListArgs),

    /// Follow audit events as they are stored, one line each (JSON lines with -o json),
    /// until interrupted.
    #[command(after_help = "\
Examples:
  canopy audit tail
  canopy audit tail --kind request --outcome error
  canopy -o json audit tail --backlog 100 | jq -c 'select(.\"error.type\" != null)'

A tail that reads too slowly loses events and says so (a line `... N events skipped`, or a
JSON line with \"canopy.reason\": \"tail-lagged\"); the control plane never waits for it.")]
    Tail(AuditTailArgs),

    /// Every stored event in a window as JSON lines on stdout (oldest page last), paging
    /// through all of them: for files and log pipelines.
    #[command(after_help = "\
Examples:
  canopy audit export --since 24h > audit-today.jsonl
  canopy audit export --since 2026-03-01T00:00:00Z --until 2026-04-01T00:00:00Z --kind change > march-changes.jsonl

Each line is one event with the same field names as `audit list -o json`, newest first.")]
    Export(AuditExportArgs),
}

/// The filters every audit command takes.
#[derive(Debug, Args, Default, Clone)]
pub struct AuditFilterArgs {
    /// Only requests by this MCP client.
    #[arg(long, value_name = "NAME")]
    pub client: Option<String>,

    /// Only events of this person signed in through an identity provider (their subject).
    #[arg(long, value_name = "SUBJECT")]
    pub subject: Option<String>,

    /// Only events of people signed in through this identity provider.
    #[arg(long, value_name = "IDP")]
    pub idp: Option<String>,

    /// Only requests to this upstream server (and changes of its registration).
    #[arg(long, value_name = "NAME")]
    pub server: Option<String>,

    /// Only calls of this tool: its name on the upstream server (also matching calls made on
    /// /mcp, which gen_ai.tool.name records as server__tool), or the recorded name itself.
    #[arg(long, value_name = "NAME")]
    pub tool: Option<String>,

    /// Only this outcome ("error" includes tool results with isError).
    #[arg(long, value_enum)]
    pub outcome: Option<AuditOutcome>,

    /// Only these kinds of events (repeatable).
    #[arg(long = "kind", value_enum)]
    pub kinds: Vec<AuditKind>,

    /// Only events of this data plane (its node id).
    #[arg(long, value_name = "ID")]
    pub data_plane: Option<String>,

    /// Only this MCP method (tools/call, ...) or Admin command (DeleteMcpClient, ...).
    #[arg(long, value_name = "METHOD")]
    pub method: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditOutcome {
    Ok,
    Error,
    Denied,
    Limited,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditKind {
    Request,
    Change,
    AuthFailure,
    Gap,
}

#[derive(Debug, Args)]
pub struct AuditWindowArgs {
    /// Start of the window: a duration ago (1h, 7d) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", default_value = "1h")]
    pub since: String,

    /// End of the window (exclusive): a duration ago or an RFC 3339 time; default now.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditListArgs {
    #[command(flatten)]
    pub filter: AuditFilterArgs,

    #[command(flatten)]
    pub window: AuditWindowArgs,

    /// At most this many events (the newest).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct AuditTailArgs {
    #[command(flatten)]
    pub filter: AuditFilterArgs,

    /// First show the last N stored events that match.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub backlog: u32,
}

#[derive(Debug, Args)]
pub struct AuditExportArgs {
    #[command(flatten)]
    pub filter: AuditFilterArgs,

    /// Start of the window: a duration ago (24h, 30d) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", required = true)]
    pub since: String,

    /// End of the window (exclusive): a duration ago or an RFC 3339 time; default now.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
}
