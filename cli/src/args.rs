//! The command line, as clap types. Nothing here talks to the network; `commands` runs
//! what is parsed.

mod audit;
mod identity;

pub use audit::*;
pub use identity::*;

use std::path::PathBuf;
use std::time::Duration;

use canopy_proto::v1 as pb;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

pub const DEFAULT_REGISTRY: &str = "http://127.0.0.1:9090";

const AFTER_HELP: &str = "\
Configuration:
  The registry URL and access token saved by `init-server` and `login` live in
  ~/.canopy.conf (or the file named by CANOPY_CONFIG), mode 0600.
  The registry is taken from --registry, else CANOPY_REGISTRY, else that file,
  else http://127.0.0.1:9090. For an https:// registry signed by a private CA, pass
  --ca-file once to `init-server` or `login`; the file saves it with the registry.

Exit codes:
  0  success
  1  the command failed (the reason is on stderr as `error: ...`)
  2  the command line is wrong
  3  the change is saved, but not every connected data plane confirmed it within --wait
     (the data planes that did not are named on stderr)
  4  invoke: the tool answered with isError: true (its result is still printed)

Examples:
  canopy --registry http://cp.internal:9090 init-server
  canopy --registry https://cp.internal:9090 --ca-file ca.pem login canopy_usr_...
  canopy register --name github --url https://api.githubcopilot.com/mcp --bearer-token ghp_xxx
  canopy create mcp-client my-agent --allow \"github\"
  canopy create user alice
  canopy -o json list tools";

/// Manage a Canopy MCP gateway: users, MCP clients, upstream servers and tools.
///
/// Every command speaks gRPC to the control plane. In enterprise mode every command
/// except `init-server` needs a user token (saved by `init-server` or `login`);
/// servers, tools and prompts can be read and invoked by any user (within the user's
/// allow list), everything else needs an admin.
#[derive(Debug, Parser)]
#[command(name = "canopy", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// URL of the control plane's gRPC endpoint.
    ///
    /// Defaults to the registry saved in the config file, else http://127.0.0.1:9090.
    /// A URL without a scheme gets http://.
    #[arg(
        long,
        global = true,
        env = "CANOPY_REGISTRY",
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub registry: Option<String>,

    /// PEM file of the CA certificate(s) that signed an https:// registry's certificate
    /// (or its self-signed certificate). Saved next to the registry by `init-server` and
    /// `login`. Default: the system's trust store and the webpki roots. After
    /// `create|update identity-provider`, `--ca-file` is the issuer's CA instead (see
    /// their --help).
    #[arg(
        long,
        global = true,
        env = "CANOPY_CA_FILE",
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub ca_file: Option<PathBuf>,

    /// Output format: `text` for people, `json` for scripts (exactly one JSON document on stdout).
    #[arg(
        short = 'o',
        long,
        global = true,
        env = "CANOPY_OUTPUT",
        value_enum,
        default_value_t = Format::Text,
        help_heading = "Global options"
    )]
    pub output: Format,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Initialize a fresh enterprise control plane: create the first admin and log in as it.
    ///
    /// Run once per enterprise server. The admin token is saved to the config file (mode
    /// 0600) and is not printed. On an already initialized server this fails.
    #[command(after_help = "Example:\n  canopy --registry http://cp.internal:9090 init-server")]
    InitServer(InitServerArgs),

    /// Check an access token with the control plane and save it in the config file, or
    /// sign in with the company's identity provider (`--sso`).
    #[command(after_help = "\
Examples:
  canopy login canopy_usr_...
  canopy login --sso                       # browser sign-in (authorization code + PKCE)
  canopy login --sso --idp corp --device-code   # on a machine without a browser
  canopy login --sso --no-browser          # print the URL, paste the redirected URL back

--sso asks the control plane which identity provider to use (--idp when it has several)
and signs you in there; the access and refresh tokens are saved in the config file (mode
0600) and the access token is renewed with the refresh token when it expires. Your role
comes from the provider's admin group (`--admin-group` on the identity provider), what you
may use from its access rules.")]
    Login(LoginArgs),

    /// Show the user the saved access token belongs to, and its role (and, after
    /// `login --sso`, the identity provider and subject).
    #[command(after_help = "\
Examples:
  canopy -o json whoami   # {\"name\": \"alice\", \"role\": \"user\"}
  canopy -o json whoami   # after login --sso:
                          # {\"name\": \"carol\", \"role\": \"admin\",
                          #  \"identity_provider\": \"corp\", \"subject\": \"carol\"}")]
    Whoami,

    /// Create an MCP client or a user.
    #[command(subcommand)]
    Create(CreateCommand),

    /// List MCP clients, users, servers, tools, prompts or data planes.
    #[command(
        subcommand,
        after_help = "\
Examples:
  canopy list mcp-clients
  canopy list tools --server github
  canopy -o json list servers | jq -r '.[].name'
  canopy list data-planes"
    )]
    List(ListCommand),

    /// Change an MCP client or a user (rotate its token, change its allow list).
    #[command(subcommand)]
    Update(UpdateCommand),

    /// Delete an MCP client or a user; its token stops working on every data plane.
    #[command(subcommand)]
    Delete(DeleteCommand),

    /// Register an upstream MCP server and discover its tools and prompts.
    ///
    /// The control plane connects to the server now; an unreachable server is an error
    /// and nothing is stored.
    #[command(after_help = "\
Examples:
  canopy register --name github --url https://api.githubcopilot.com/mcp --bearer-token ghp_xxx
  canopy register -c ./filesystem.json
  canopy register --name payroll --url https://payroll.internal/mcp --audit-payload hash

Server file (JSON; unknown fields are rejected):
  {\"name\": \"fs\", \"transport\": \"stdio\", \"command\": \"npx\",
   \"args\": [\"-y\", \"@modelcontextprotocol/server-filesystem\", \"/srv\"], \"env\": {},
   \"description\": \"...\", \"timeout_ms\": 30000, \"audit_payload\": \"off\"}
  HTTP servers use \"url\", \"bearer_token\" and \"headers\" instead of command/args/env;
  transport is streamable_http (default), sse or stdio.")]
    Register(RegisterArgs),

    /// Remove a registered server and its tools and prompts; every data plane stops routing
    /// to it.
    #[command(after_help = "Example:\n  canopy deregister github --wait 10s")]
    Deregister(DeleteArgs),

    /// Re-discover something now.
    #[command(subcommand, after_help = "Example:\n  canopy refresh server github")]
    Refresh(RefreshCommand),

    /// Show a tool's description and input schema.
    #[command(after_help = "Example:\n  canopy usage github__search_repositories")]
    Usage(ToolArg),

    /// Call a tool through the control plane with the server's registered credentials.
    #[command(after_help = "\
Examples:
  canopy invoke github__search_repositories --input '{\"query\": \"canopy\"}'
  canopy invoke fs__read_file --input @args.json
  echo '{}' | canopy invoke time__now --input -

With -o json the tool's CallToolResult is printed exactly as received.
Exits 4 when the tool answers with isError: true. A user may invoke only the tools their allow
list allows (see `canopy create user --help`); others answer like unknown tools.")]
    Invoke(InvokeArgs),

    /// Explain an authorization decision.
    #[command(subcommand)]
    Explain(ExplainCommand),

    /// Revoke a person signed in with an identity provider.
    #[command(subcommand)]
    Revoke(RevokeCommand),

    /// Lift a subject's revocation: their unexpired tokens work again.
    #[command(after_help = "Example:\n  canopy unrevoke --idp corp 00u1abcd")]
    Unrevoke(UnrevokeArgs),

    /// The audit trail: MCP requests on every data plane, changes made through the Admin
    /// API, failed authentications (admins only).
    #[command(
        subcommand,
        after_help = "\
Examples:
  canopy audit list --since 1h --outcome denied
  canopy audit tail --kind change
  canopy audit export --since 24h > audit.jsonl"
    )]
    Audit(AuditCommand),

    /// Show the CLI's version and, if reachable, the control plane's version and mode.
    Version,

    /// Run a control plane and one data plane in this process (quick start).
    ///
    /// The data plane syncs from the control plane over gRPC exactly like a remote one.
    /// Stop with Ctrl-C or SIGTERM: in-flight requests finish, the store is flushed.
    Start(crate::commands::start::StartArgs),
}

#[derive(Debug, Args)]
pub struct InitServerArgs {
    /// The init token the control plane was started with (--init-token-file or CANOPY_INIT_TOKEN),
    /// if it was started with one.
    #[arg(
        long,
        env = "CANOPY_INIT_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub init_token: Option<String>,
}

#[derive(Debug, Args, Default)]
#[command(group(ArgGroup::new("how").required(true).args(["access_token", "sso"])))]
pub struct LoginArgs {
    /// The access token an admin gave you (printed by `canopy create user`).
    pub access_token: Option<String>,

    /// Sign in with the identity provider instead (OAuth 2.1 authorization code flow with
    /// PKCE, the browser coming back to this CLI on http://127.0.0.1:<random port>).
    #[arg(long, conflicts_with = "access_token")]
    pub sso: bool,

    /// The identity provider to sign in with, when the control plane has several.
    #[arg(long, value_name = "NAME")]
    pub idp: Option<String>,

    /// Use the device authorization grant (RFC 8628): print a URL and a code to enter on
    /// any device with a browser.
    #[arg(long, conflicts_with = "no_browser")]
    pub device_code: bool,

    /// Do not open a browser: print the sign-in URL and paste the URL the browser was sent
    /// back to (or just its code) here.
    #[arg(long)]
    pub no_browser: bool,

    /// Suggest the account to sign in as to the provider (`login_hint`), e.g. your email.
    #[arg(long, value_name = "ACCOUNT")]
    pub login_hint: Option<String>,

    /// How long to wait for the sign-in to complete.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

impl LoginArgs {
    /// The `--sso` options given without `--sso` (clap's `requires` cannot see a flag that
    /// defaults to false as missing).
    pub fn sso_options_without_sso(&self) -> Option<&'static str> {
        if self.sso {
            return None;
        }
        [
            (self.idp.is_some(), "--idp"),
            (self.device_code, "--device-code"),
            (self.no_browser, "--no-browser"),
            (self.login_hint.is_some(), "--login-hint"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// The server's name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ToolArg {
    /// The tool's name as clients see it: `<server>__<tool>`.
    pub tool: String,
}

#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// Create an MCP client: a bearer token for AI clients, scoped to an allow list.
    #[command(after_help = "\
Examples:
  canopy create mcp-client claude-desktop --allow \"github, jira\"
  canopy create mcp-client ci-bot --allow \"github__search_code\" --description \"CI reviewer\"
  canopy create mcp-client later-bot --allow \"jira\" --force   # jira is registered later
  canopy create mcp-client --conf ./claude-client.json

Client file (JSON; unknown fields are rejected; exactly one token source):
  {\"name\": \"claude-desktop\", \"description\": \"...\", \"allowed_servers\": [\"github\", \"jira\"],
   \"access_token_ref\": {\"env\": \"CLAUDE_CLIENT_TOKEN\"}}
  Token sources: \"access_token\": \"...\", \"access_token_ref\": {\"env\": \"VAR\"} or
  \"access_token_ref\": {\"file\": \"/run/secrets/token\"} (relative to the file's directory).

Every allow-list entry must name a registered server or tool (or be *); a misspelled one is
refused with what exists, unless --force. A generated token is printed once and never shown again.")]
    McpClient(CreateClientArgs),

    /// Create a user who can use the CLI (role user: read and invoke within an allow list;
    /// admin: everything).
    #[command(after_help = "\
Examples:
  canopy create user alice                                 # may list and invoke every tool
  canopy create user carol --allow \"github, jira__search\"  # only these
  canopy create user bob --role admin
  canopy create user --conf ./alice.json

User file (JSON; unknown fields are rejected; exactly one token source):
  {\"name\": \"alice\", \"role\": \"user\", \"allowed_servers\": [\"github\"],
   \"access_token_ref\": {\"env\": \"ALICE_ACCESS_TOKEN\"}}
  Without allowed_servers (or --allow) the user may use every server, as before.

A generated token is printed once, with the `canopy login` line to give the user.")]
    User(CreateUserArgs),

    /// Trust an identity provider's access tokens on every data plane (enterprise mode).
    #[command(after_help = "\
Examples:
  canopy create identity-provider corp --issuer https://corp.okta.com/oauth2/default
  canopy create identity-provider entra --issuer https://login.microsoftonline.com/TENANT/v2.0 \\
      --audience api://canopy --groups-claim groups --algorithms RS256
  canopy create identity-provider kc --issuer https://kc.internal/realms/acme \\
      --ca-file kc-ca.pem --groups-claim realm_access.roles
  canopy create identity-provider -c ./corp-idp.json
  canopy create identity-provider corp --issuer https://corp.okta.com/oauth2/default \\
      --cli-client-id 0oa1canopycli --admin-group canopy-admins   # for `canopy login --sso`

The control plane reads the issuer's discovery document and keys now; an issuer that
cannot be reached or answers garbage is an error and nothing is stored. Keys are
fetched again every --idp-refresh-interval (control plane flag) and soon after a data
plane sees an unknown key id.

Provider file (JSON; unknown fields are rejected):
  {\"name\": \"corp\", \"issuer\": \"https://corp.okta.com/oauth2/default\",
   \"audiences\": [\"api://canopy\"], \"jwks_uri\": \"...\", \"subject_claim\": \"sub\",
   \"groups_claim\": \"groups\", \"algorithms\": [\"RS256\"], \"leeway\": \"60s\",
   \"required_scopes\": [\"mcp\"], \"ca_file\": \"corp-ca.pem\",
   \"cli_client_id\": \"0oa1canopycli\", \"admin_group\": \"canopy-admins\",
   \"admin_audience\": \"https://canopy-cp.corp.example\"}
  ca_file is relative to the file's directory.

--ca-file on this command is the issuer's CA (a private CA that signed the issuer's
https certificate). The registry's CA comes from --ca-file written before the
subcommand (`canopy --ca-file cp-ca.pem create identity-provider ...`), else
--registry-ca-file, else CANOPY_CA_FILE, else the one saved in the config file.")]
    IdentityProvider(CreateIdpArgs),

    /// Let the people an identity provider vouches for use servers and tools, by claims.
    #[command(after_help = "\
Examples:
  canopy create access-rule eng-github --idp corp --group eng --allow github
  canopy create access-rule contractors --idp corp --email-domain partner.example \\
      --group contractors --allow \"jira__search\"
  canopy create access-rule ann --idp corp --subject 00u1abcd --allow \"*\"

Conditions of one kind are alternatives (--group a --group b: either group); different
kinds must all hold. A person's scope is the union of the rules that match them; a
person no rule matches sees nothing.")]
    AccessRule(CreateRuleArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["name", "conf"])))]
pub struct CreateClientArgs {
    /// Unique client name (letters, digits, '_' and '-').
    pub name: Option<String>,

    /// Comma-separated servers (`github`), single tools (`github__search`) or `*` for every
    /// server, including ones registered later. Empty: no access.
    #[arg(long, value_name = "LIST", conflicts_with = "conf")]
    pub allow: Option<String>,

    /// Free-text description.
    #[arg(long, value_name = "TEXT", conflicts_with = "conf")]
    pub description: Option<String>,

    /// Use this token instead of generating one (at least 16 characters, no whitespace).
    #[arg(long, value_name = "TOKEN", conflicts_with = "conf")]
    pub access_token: Option<String>,

    /// Read the client's definition from a JSON file instead of flags.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub conf: Option<PathBuf>,

    /// Store allow-list entries that name no registered server or tool (e.g. a server you
    /// register later) instead of refusing them.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["name", "conf"])))]
pub struct CreateUserArgs {
    /// Unique user name (letters, digits, '_' and '-').
    pub name: Option<String>,

    /// Use this token instead of generating one (at least 16 characters, no whitespace).
    #[arg(long, value_name = "TOKEN", conflicts_with = "conf")]
    pub access_token: Option<String>,

    /// What the user may list, see with `usage` and `invoke`: comma-separated servers
    /// (`github`), single tools (`github__search`) or `*` for every server. Default `*`;
    /// "" = nothing. Tools outside the list answer like unknown ones. Admins are not
    /// restricted (only `*` is accepted for them).
    #[arg(long, value_name = "LIST", conflicts_with = "conf")]
    pub allow: Option<String>,

    /// `user` may list and invoke (within --allow); `admin` may do everything.
    #[arg(long, value_enum, default_value_t = Role::User, conflicts_with = "conf")]
    pub role: Role,

    /// Read the user's definition from a JSON file instead of flags.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub conf: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn to_proto(self) -> pb::Role {
        match self {
            Role::User => pb::Role::User,
            Role::Admin => pb::Role::Admin,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// MCP clients with their allow lists (never their tokens).
    McpClients,
    /// Users with their allow lists; admins are marked [ADMIN].
    Users,
    /// Registered upstream servers (credentials are never shown); a user sees those their
    /// allow list reaches.
    Servers,
    /// Tools, named `<server>__<tool>`; a user sees those their allow list allows.
    Tools(ServerFilter),
    /// Prompts, named `<server>__<prompt>`; a user sees those of servers their allow list
    /// names whole.
    Prompts(ServerFilter),
    /// Data planes the control plane knows: id, address, applied revision, lag, last seen.
    DataPlanes,
    /// Identity providers with their keys and the last key refresh (and its error).
    IdentityProviders,
    /// Access rules: provider, conditions, allow list.
    AccessRules(IdpFilter),
    /// Revoked subjects.
    Revocations(IdpFilter),
}

#[derive(Debug, Args)]
pub struct ServerFilter {
    /// Only this server's.
    #[arg(long, value_name = "NAME")]
    pub server: Option<String>,
}

/// How long a revoking or re-scoping command waits for every connected data plane.
#[derive(Debug, Args)]
pub struct WaitArg {
    /// Wait this long for every connected data plane to apply the change (e.g. 5s, 1m, 0s =
    /// do not wait). If some have not, they are named on stderr and the exit code is 3.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub wait: Duration,
}

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Rotate an MCP client's token, replace its allow list or change its description.
    #[command(after_help = "\
Examples:
  canopy update mcp-client claude-desktop --new-token --grace 10m
  canopy update mcp-client claude-desktop --access-token \"$NEW_TOKEN\"
  canopy update mcp-client claude-desktop --allow \"github, jira__search\"
  canopy update mcp-client claude-desktop --allow \"\"      # no access at all

A generated token (--new-token) is printed once (JSON: access_token) and never shown again.
A token or allow-list change returns once every connected data plane applied it
(or --wait ran out: exit code 3).")]
    McpClient(UpdateClientArgs),

    /// Rotate a user's token, replace their allow list or change their role.
    #[command(after_help = "\
Examples:
  canopy update user alice --new-token
  canopy update user alice --access-token \"$NEW_TOKEN\" --grace 10m
  canopy update user alice --allow \"github, jira__search\"
  canopy update user alice --allow \"*\"     # every server again
  canopy update user bob --role admin

A generated token (--new-token) is printed once (JSON: access_token) with the
`canopy login` line to give the user. A token change returns once every connected data
plane applied it (or --wait ran out: exit code 3). The new allow list applies to the
user's next command; admins are not restricted. The last admin cannot be made a user.")]
    User(UpdateUserArgs),

    /// Change an identity provider; flags given replace the current values.
    #[command(after_help = "\
Examples:
  canopy update identity-provider corp --algorithms RS256 --leeway 30s
  canopy update identity-provider corp --audience api://canopy --audience canopy
  canopy --ca-file cp-ca.pem update identity-provider kc --ca-file kc-ca.pem

Discovery and keys are fetched again first (nothing changes if that fails); returns
once every connected data plane applied it (or --wait ran out: exit code 3).

--ca-file on this command is the issuer's CA (a private CA that signed the issuer's
https certificate). The registry's CA comes from --ca-file written before the
subcommand (`canopy --ca-file cp-ca.pem create identity-provider ...`), else
--registry-ca-file, else CANOPY_CA_FILE, else the one saved in the config file.")]
    IdentityProvider(UpdateIdpArgs),

    /// Change an access rule's conditions or allow list.
    #[command(after_help = "\
Examples:
  canopy update access-rule eng-github --allow \"github, jira\"
  canopy update access-rule eng-github --group eng --group sre

Returns once every connected data plane applied it (or --wait ran out: exit code 3).")]
    AccessRule(UpdateRuleArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true).args(["access_token", "new_token", "allow", "description"])))]
#[command(group(ArgGroup::new("token").args(["access_token", "new_token"])))]
pub struct UpdateClientArgs {
    /// The client's name.
    pub name: String,

    /// New token (at least 16 characters, no whitespace); the old one stops working.
    #[arg(long, value_name = "TOKEN")]
    pub access_token: Option<String>,

    /// Generate a new token and print it once; the old one stops working (see --grace).
    #[arg(long)]
    pub new_token: bool,

    /// New allow list, replacing the old one (same syntax as `create`; "" = no access).
    #[arg(long, value_name = "LIST")]
    pub allow: Option<String>,

    /// New description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,

    /// Keep the old token valid this long after a token change (e.g. 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "token")]
    pub grace: Option<Duration>,

    /// Store allow-list entries that name no registered server or tool (e.g. a server you
    /// register later) instead of refusing them.
    #[arg(long, requires = "allow")]
    pub force: bool,

    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true).args(["access_token", "new_token", "allow", "role"])))]
#[command(group(ArgGroup::new("token").args(["access_token", "new_token"])))]
pub struct UpdateUserArgs {
    /// The user's name.
    pub name: String,

    /// New token (at least 16 characters, no whitespace); the old one stops working.
    #[arg(long, value_name = "TOKEN")]
    pub access_token: Option<String>,

    /// New allow list, replacing the old one (same syntax as `create user`; "" = nothing).
    #[arg(long, value_name = "LIST")]
    pub allow: Option<String>,

    /// Generate a new token and print it once; the old one stops working (see --grace).
    #[arg(long)]
    pub new_token: bool,

    /// New role: `user` may list and invoke; `admin` may do everything.
    #[arg(long, value_enum)]
    pub role: Option<Role>,

    /// Keep the old token valid this long (e.g. 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "token")]
    pub grace: Option<Duration>,

    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
    /// Delete an MCP client; its token is revoked on every data plane.
    #[command(after_help = "Example:\n  canopy delete mcp-client claude-desktop --wait 10s")]
    McpClient(DeleteArgs),
    /// Delete a user; their token is revoked. The last admin cannot be deleted.
    #[command(after_help = "Example:\n  canopy delete user alice")]
    User(DeleteArgs),
    /// Delete an identity provider with its access rules and revocations; its tokens stop
    /// working on every data plane.
    #[command(after_help = "Example:\n  canopy delete identity-provider corp --wait 10s")]
    IdentityProvider(DeleteArgs),
    /// Delete an access rule; the people it matched lose what it allowed.
    #[command(after_help = "Example:\n  canopy delete access-rule eng-github")]
    AccessRule(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The name to delete.
    pub name: String,

    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["name", "conf"])))]
pub struct RegisterArgs {
    /// Server name: letters, digits, '_' and '-', no `__`, not ending in '_'.
    #[arg(long, value_name = "NAME", requires = "url")]
    pub name: Option<String>,

    /// The server's MCP endpoint.
    #[arg(long, value_name = "URL", requires = "name")]
    pub url: Option<String>,

    /// Sent upstream as `Authorization: Bearer <token>`; stored by the control plane, never listed.
    #[arg(long, value_name = "TOKEN")]
    pub bearer_token: Option<String>,

    /// Free-text description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,

    /// streamable_http (current MCP) or sse (the legacy HTTP+SSE transport).
    #[arg(long, value_enum, default_value_t = HttpTransport::StreamableHttp)]
    pub transport: HttpTransport,

    /// Deadline for each call to this server (e.g. 30s); default 60s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// What data planes record of this server's tool arguments and results in the audit
    /// trail: off (nothing, the default), hash (a BLAKE3 hash of each) or full (the JSON,
    /// bounded by the data plane). Overrides `audit_payload` of a -c file. To change it later,
    /// register again with --force.
    #[arg(long, value_enum, value_name = "off|hash|full")]
    pub audit_payload: Option<AuditPayload>,

    /// Replace a server registered under the same name.
    #[arg(long)]
    pub force: bool,

    /// Read the server's definition from a JSON file instead of flags.
    #[arg(
        short = 'c',
        long,
        value_name = "FILE",
        conflicts_with_all = ["name", "url", "bearer_token", "description", "transport", "timeout"]
    )]
    pub conf: Option<PathBuf>,
}

/// The per-server audit payload setting, as flags and server files name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditPayload {
    Off,
    Hash,
    Full,
}

impl AuditPayload {
    pub fn to_proto(self) -> pb::AuditPayload {
        match self {
            AuditPayload::Off => pb::AuditPayload::Off,
            AuditPayload::Hash => pb::AuditPayload::Hash,
            AuditPayload::Full => pb::AuditPayload::Full,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HttpTransport {
    #[value(name = "streamable_http")]
    StreamableHttp,
    Sse,
}

/// Every transport, as server files name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    StreamableHttp,
    Sse,
    Stdio,
}

impl Transport {
    pub fn to_proto(self) -> pb::Transport {
        match self {
            Transport::StreamableHttp => pb::Transport::StreamableHttp,
            Transport::Sse => pb::Transport::Sse,
            Transport::Stdio => pb::Transport::Stdio,
        }
    }
}

impl From<HttpTransport> for Transport {
    fn from(t: HttpTransport) -> Self {
        match t {
            HttpTransport::StreamableHttp => Transport::StreamableHttp,
            HttpTransport::Sse => Transport::Sse,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RefreshCommand {
    /// Re-discover a server's tools and prompts now.
    Server(NameArg),
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The tool's name as clients see it: `<server>__<tool>`.
    pub tool: String,

    /// The tool's arguments: a JSON object, `@FILE` to read it from a file, or `-` for stdin.
    #[arg(long, value_name = "JSON")]
    pub input: Option<String>,
}

/// `5s`, `1m30s`, `250ms`; a bare number is seconds, because `--wait 10` meaning ten
/// seconds is what people type.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 5s, 250ms, 2m)"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("canopy").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    /// (registry CA, issuer CA) of a parsed command line.
    fn ca_files(args: &[&str]) -> (Option<PathBuf>, Option<PathBuf>) {
        let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let issuer = match cli.command {
            Command::Create(CreateCommand::IdentityProvider(a)) => a.settings.issuer_ca_file,
            Command::Update(UpdateCommand::IdentityProvider(a)) => a.settings.issuer_ca_file,
            _ => None,
        };
        (cli.ca_file, issuer)
    }

    fn some(p: &str) -> Option<PathBuf> {
        Some(PathBuf::from(p))
    }

    #[test]
    fn ca_file_after_identity_provider_is_the_issuers() {
        let create = [
            "create",
            "identity-provider",
            "kc",
            "--issuer",
            "https://kc",
        ];
        let with = |before: &[&'static str], after: &[&'static str]| {
            let mut v: Vec<&str> = before.to_vec();
            v.extend_from_slice(&create);
            v.extend_from_slice(after);
            ca_files(&v)
        };
        assert_eq!(
            with(&["--ca-file", "cp.pem"], &["--ca-file", "kc.pem"]),
            (some("cp.pem"), some("kc.pem"))
        );
        assert_eq!(with(&[], &["--ca-file", "kc.pem"]), (None, some("kc.pem")));
        assert_eq!(with(&[], &["--ca-file=kc.pem"]), (None, some("kc.pem")));
        assert_eq!(with(&["--ca-file", "cp.pem"], &[]), (some("cp.pem"), None));
        // The old spelling still works, hidden.
        assert_eq!(
            with(&["--ca-file", "cp.pem"], &["--issuer-ca-file", "kc.pem"]),
            (some("cp.pem"), some("kc.pem"))
        );
        // The registry's CA may also be named after the subcommand.
        assert_eq!(
            with(
                &[],
                &["--ca-file", "kc.pem", "--registry-ca-file", "cp.pem"]
            ),
            (some("cp.pem"), some("kc.pem"))
        );
        assert_eq!(
            ca_files(&[
                "--ca-file",
                "cp.pem",
                "update",
                "identity-provider",
                "kc",
                "--ca-file",
                "kc.pem"
            ]),
            (some("cp.pem"), some("kc.pem"))
        );
        assert_eq!(
            ca_files(&["update", "identity-provider", "kc", "--ca-file", "kc.pem"]),
            (None, some("kc.pem"))
        );
        // Everywhere else --ca-file is the registry's, before or after the subcommand.
        assert_eq!(
            ca_files(&["list", "identity-providers", "--ca-file", "cp.pem"]),
            (some("cp.pem"), None)
        );
        assert_eq!(
            ca_files(&["--ca-file", "cp.pem", "login", "canopy_usr_x"]),
            (some("cp.pem"), None)
        );
        let help = Cli::command()
            .find_subcommand_mut("create")
            .and_then(|c| c.find_subcommand_mut("identity-provider"))
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("--ca-file <FILE>"), "{help}");
        assert!(help.contains("CANOPY_CA_FILE"), "{help}");
        assert!(!help.contains("--issuer-ca-file"), "{help}");
    }

    /// CANOPY_CA_FILE is the registry's CA on these commands too, and never the issuer's.
    /// The environment is the process's, so the assertions run in a child test process.
    #[test]
    fn ca_file_env_is_the_registrys() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "args::tests::ca_file_env_child",
                "--ignored",
                "--nocapture",
            ])
            .env("CANOPY_CA_FILE", "env.pem")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}{stderr}");
    }

    #[test]
    #[ignore = "run by ca_file_env_is_the_registrys with CANOPY_CA_FILE set"]
    fn ca_file_env_child() {
        assert_eq!(std::env::var("CANOPY_CA_FILE").as_deref(), Ok("env.pem"));
        let idp = [
            "create",
            "identity-provider",
            "kc",
            "--issuer",
            "https://kc",
        ];
        assert_eq!(ca_files(&idp), (some("env.pem"), None));
        let mut v = idp.to_vec();
        v.extend(["--ca-file", "kc.pem"]);
        assert_eq!(ca_files(&v), (some("env.pem"), some("kc.pem")));
        let mut v = vec!["--ca-file", "cp.pem"];
        v.extend(idp);
        v.extend(["--ca-file", "kc.pem"]);
        assert_eq!(ca_files(&v), (some("cp.pem"), some("kc.pem")));
        assert_eq!(
            ca_files(&["update", "identity-provider", "kc", "--ca-file", "kc.pem"]),
            (some("env.pem"), some("kc.pem"))
        );
        assert_eq!(ca_files(&["list", "users"]), (some("env.pem"), None));
    }

    #[test]
    fn globals_anywhere() {
        let cli = parse(&["list", "users", "-o", "json", "--registry", "http://x:1"]).unwrap();
        assert_eq!(cli.output, Format::Json);
        assert_eq!(cli.registry.as_deref(), Some("http://x:1"));
        assert!(matches!(cli.command, Command::List(ListCommand::Users)));
    }

    #[test]
    fn create_client_flags_or_conf() {
        let cli = parse(&["create", "mcp-client", "a", "--allow", "github, jira"]).unwrap();
        let Command::Create(CreateCommand::McpClient(a)) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(a.name.as_deref(), Some("a"));
        assert_eq!(a.allow.as_deref(), Some("github, jira"));
        assert!(parse(&["create", "mcp-client", "-c", "f.json"]).is_ok());
        // Neither a name nor a file.
        assert!(parse(&["create", "mcp-client"]).is_err());
        // A file plus flags is ambiguous.
        assert!(parse(&["create", "mcp-client", "--conf", "f.json", "--allow", "x"]).is_err());
    }

    #[test]
    fn update_client_needs_a_change() {
        let err = parse(&["update", "mcp-client", "a"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let cli = parse(&["update", "mcp-client", "a", "--allow", ""]).unwrap();
        let Command::Update(UpdateCommand::McpClient(u)) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(u.allow.as_deref(), Some(""));
        assert_eq!(u.wait.wait, Duration::from_secs(5));
        // --grace only makes sense with a new token.
        assert!(parse(&["update", "mcp-client", "a", "--allow", "x", "--grace", "1m"]).is_err());
        let cli = parse(&[
            "update",
            "mcp-client",
            "a",
            "--access-token",
            "t",
            "--grace",
            "1m",
            "--wait",
            "0s",
        ])
        .unwrap();
        let Command::Update(UpdateCommand::McpClient(u)) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(u.grace, Some(Duration::from_secs(60)));
        assert_eq!(u.wait.wait, Duration::ZERO);
    }

    #[test]
    fn update_user_needs_a_change() {
        assert!(parse(&["update", "user", "alice"]).is_err());
        assert!(parse(&["update", "user", "alice", "--access-token", "x"]).is_ok());
        let cli = parse(&["update", "user", "alice", "--allow", ""]).unwrap();
        let Command::Update(UpdateCommand::User(u)) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!((u.allow.as_deref(), u.access_token), (Some(""), None));
        assert!(parse(&["update", "user", "alice", "--allow", "x", "--grace", "1m"]).is_err());
    }

    #[test]
    fn create_user_allow() {
        let cli = parse(&["create", "user", "carol", "--allow", "gh__search"]).unwrap();
        let Command::Create(CreateCommand::User(u)) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(u.allow.as_deref(), Some("gh__search"));
        assert!(parse(&["create", "user", "--conf", "f.json", "--allow", "x"]).is_err());
    }

    #[test]
    fn delete_wait() {
        let cli = parse(&["delete", "user", "alice", "--wait", "2s"]).unwrap();
        let Command::Delete(DeleteCommand::User(d)) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(d.wait.wait, Duration::from_secs(2));
        assert!(parse(&["delete", "user", "alice", "--wait", "soon"]).is_err());
    }

    #[test]
    fn create_user_roles() {
        let cli = parse(&["create", "user", "bob", "--role", "admin"]).unwrap();
        let Command::Create(CreateCommand::User(u)) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(u.role, Role::Admin);
        assert!(parse(&["create", "user", "bob", "--role", "root"]).is_err());
    }

    #[test]
    fn register_forms() {
        let cli = parse(&[
            "register",
            "--name",
            "gh",
            "--url",
            "http://x/mcp",
            "--transport",
            "sse",
            "--timeout",
            "30s",
        ])
        .unwrap();
        let Command::Register(r) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(r.transport, HttpTransport::Sse);
        assert_eq!(r.timeout, Some(Duration::from_secs(30)));
        assert!(parse(&["register", "-c", "s.json"]).is_ok());
        assert!(parse(&["register", "-c", "s.json", "--force"]).is_ok());
        assert!(parse(&["register", "--name", "gh"]).is_err());
        assert!(parse(&["register", "-c", "s.json", "--name", "gh"]).is_err());
        assert!(parse(&["register"]).is_err());
    }

    #[test]
    fn other_commands() {
        assert!(matches!(
            parse(&["whoami"]).unwrap().command,
            Command::Whoami
        ));
        assert!(matches!(
            parse(&["list", "tools", "--server", "gh"]).unwrap().command,
            Command::List(ListCommand::Tools(ServerFilter { server: Some(_) }))
        ));
        assert!(matches!(
            parse(&["list", "data-planes"]).unwrap().command,
            Command::List(ListCommand::DataPlanes)
        ));
        assert!(matches!(
            parse(&["refresh", "server", "gh"]).unwrap().command,
            Command::Refresh(_)
        ));
        assert!(matches!(
            parse(&["invoke", "gh__x", "--input", "{}"])
                .unwrap()
                .command,
            Command::Invoke(_)
        ));
        assert!(matches!(
            parse(&["init-server", "--init-token", "t"])
                .unwrap()
                .command,
            Command::InitServer(_)
        ));
        assert!(parse(&["-o", "yaml", "whoami"]).is_err());
    }
}
