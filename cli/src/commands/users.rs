//! `create|list|update|delete user`: people who use the CLI, as `user` (within an allow
//! list) or `admin`.

use canopy_core::{name, token, AllowList};
use canopy_proto::v1 as pb;
use serde::Serialize;

use crate::args::{CreateUserArgs, DeleteArgs, UpdateUserArgs, DEFAULT_REGISTRY};
use crate::commands::{
    finish_mutation, grace_ms, send_mutation, wait_options, waiting_deadline, Ctx, Outcome,
};
use crate::conf_file;
use crate::error::CliError;
use crate::output::{role_name, table};

/// `create user` JSON (SPEC §2); `list users` uses the same without the token.
#[derive(Debug, Serialize)]
pub struct UserJson {
    pub name: String,
    pub role: &'static str,
    /// What the user may list and invoke (admins: always `*`).
    pub allowed_servers: Vec<String>,
    /// Only when the control plane generated the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
}

pub async fn create(ctx: &Ctx, args: CreateUserArgs) -> Result<(), CliError> {
    let req = match (&args.conf, args.name) {
        (Some(path), _) => {
            let d = conf_file::load_user(path)?;
            pb::CreateUserRequest {
                name: d.name,
                role: d.role.to_proto() as i32,
                access_token: d.access_token,
                allowed_servers: d.allowed.map(wire_list),
            }
        }
        (None, Some(name)) => {
            name::validate_principal_name("user", &name)?;
            let allowed = args
                .allow
                .as_deref()
                .map(AllowList::parse_csv)
                .transpose()?;
            if let Some(t) = &args.access_token {
                token::validate_custom(t)?;
            }
            pb::CreateUserRequest {
                name,
                role: args.role.to_proto() as i32,
                access_token: args.access_token.unwrap_or_default(),
                allowed_servers: allowed.map(wire_list),
            }
        }
        (None, None) => return Err(CliError::usage("give the user's name or --conf FILE")),
    };
    let mut a = ctx.admin()?;
    let resp = a.at.call(a.rpc.create_user(req.clone())).await?;
    let user = resp.user.unwrap_or(pb::UserInfo {
        name: req.name,
        role: req.role,
        allowed_servers: req
            .allowed_servers
            .map_or_else(|| AllowList::everything().to_strings(), |l| l.entries),
        ..Default::default()
    });
    let json = UserJson {
        access_token: (!resp.access_token.is_empty()).then_some(resp.access_token),
        ..UserJson::from(user)
    };
    let registry = a.at.registry.clone();
    ctx.emit(&json, || created_text(&json, &registry))
}

fn wire_list(list: AllowList) -> pb::AllowList {
    pb::AllowList {
        entries: list.to_strings(),
    }
}

impl From<pb::UserInfo> for UserJson {
    fn from(u: pb::UserInfo) -> Self {
        Self {
            name: u.name,
            role: role_name(u.role),
            allowed_servers: u.allowed_servers,
            access_token: None,
        }
    }
}

fn allowed_text(allowed: &[String]) -> String {
    if allowed.is_empty() {
        "(none)".to_owned()
    } else {
        allowed.join(", ")
    }
}

fn created_text(u: &UserJson, registry: &str) -> String {
    let mut t = format!(
        "User '{}' created (role: {}; allowed: {}).\n",
        u.name,
        u.role,
        allowed_text(&u.allowed_servers)
    );
    match &u.access_token {
        Some(tok) => t.push_str(&format!(
            "The access token is shown only this once. The user should now run the following command \
             to log in:\n\n    canopy login {tok}\n"
        )),
        None => t.push_str(
            "It uses the access token you supplied. The user should now run the following command \
             to log in:\n\n    canopy login <access-token>\n",
        ),
    }
    if registry != DEFAULT_REGISTRY {
        t.push_str(&format!(
            "\n(on their machine, with --registry {registry} or CANOPY_REGISTRY={registry})"
        ));
    }
    t
}

pub async fn list(ctx: &Ctx) -> Result<(), CliError> {
    let mut a = ctx.admin()?;
    let resp = a.at.call(a.rpc.list_users(pb::ListUsersRequest {})).await?;
    let users: Vec<UserJson> = resp.users.into_iter().map(UserJson::from).collect();
    ctx.emit(&users, || list_text(&users))
}

/// NAME, ROLE (admins marked `[ADMIN]` as the reference page shows them) and ALLOWED.
fn list_text(users: &[UserJson]) -> String {
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            let role = if u.role == "admin" {
                "admin [ADMIN]".to_owned()
            } else {
                u.role.to_owned()
            };
            vec![u.name.clone(), role, allowed_text(&u.allowed_servers)]
        })
        .collect();
    table(&["NAME", "ROLE", "ALLOWED"], &rows, "No users.")
}

pub async fn update(ctx: &Ctx, args: UpdateUserArgs) -> Result<(), CliError> {
    let allowed = args
        .allow
        .as_deref()
        .map(AllowList::parse_csv)
        .transpose()?;
    let token_change = args.access_token.is_some() || args.new_token;
    if !token_change && args.role.is_none() && allowed.is_none() {
        // clap's argument group already demands one; kept for callers that bypass clap.
        return Err(CliError::usage(
            "give at least one of --access-token, --new-token, --allow, --role",
        ));
    }
    let headline = update_headline(&args.name, token_change, args.grace, allowed.as_ref());
    let req = pb::UpdateUserRequest {
        name: args.name.clone(),
        access_token: args.access_token.unwrap_or_default(),
        grace_ms: grace_ms(args.grace),
        wait: wait_options(args.wait.wait),
        allowed_servers: allowed.as_ref().map(|l| wire_list(l.clone())),
        new_token: args.new_token,
        role: req_role(args.role),
    };
    let mut a = ctx.admin()?;
    let result =
        a.at.call_within(waiting_deadline(args.wait.wait), a.rpc.update_user(req))
            .await?;
    let role_text = args
        .role
        .map(|r| format!("role: {}", role_name(r.to_proto() as i32)));
    if !token_change {
        // Data planes hold neither roles nor users' allow lists: a plain write, nothing to wait for.
        let json = RoleJson {
            name: args.name.clone(),
            role: args.role.map(|r| role_name(r.to_proto() as i32)),
            allowed_servers: allowed.map(|l| l.to_strings()),
            revision: result.revision,
        };
        let text = match (&role_text, &json.allowed_servers) {
            (Some(r), None) => format!("User '{}' updated ({r})", json.name),
            (None, Some(_)) => headline.trim_end_matches('.').to_owned(),
            (Some(r), Some(_)) => format!("{} ({r})", headline.trim_end_matches('.')),
            (None, None) => format!("User '{}' updated", json.name),
        };
        return ctx.emit(&json, || format!("{text} at revision {}.", json.revision));
    }
    let also = role_text.map(|r| format!(" ({r})")).unwrap_or_default();
    let mut outcome = Outcome::new(
        format!("{}{also}", headline),
        format!("The new access token of user '{}'{also}", args.name),
    );
    if !result.access_token.is_empty() {
        outcome.extra = Some(format!(
            "The access token is shown only this once. The user should now run the following \
             command to log in:\n\n    canopy login {}\n",
            result.access_token
        ));
    }
    finish_mutation(ctx, &outcome, &result, args.wait.wait)
}

fn req_role(role: Option<crate::args::Role>) -> i32 {
    role.map_or(0, |r| r.to_proto() as i32)
}

/// `update user` JSON without a token change: a plain write, no data-plane report.
#[derive(Debug, Serialize)]
struct RoleJson {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_servers: Option<Vec<String>>,
    revision: u64,
}

fn update_headline(
    name: &str,
    new_token: bool,
    grace: Option<std::time::Duration>,
    allowed: Option<&AllowList>,
) -> String {
    let mut parts = Vec::new();
    if new_token {
        parts.push(match grace {
            Some(g) if !g.is_zero() => format!(
                "has a new access token; the old one keeps working for {}",
                humantime::format_duration(g)
            ),
            _ => "has a new access token; the old one no longer works".to_owned(),
        });
    }
    if let Some(list) = allowed {
        parts.push(format!("may now use: {}", allowed_text(&list.to_strings())));
    }
    format!("User '{name}' {}.", parts.join("; and "))
}

pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> Result<(), CliError> {
    let req = pb::DeleteUserRequest {
        name: args.name.clone(),
        wait: wait_options(args.wait.wait),
    };
    let mut a = ctx.admin()?;
    let outcome = Outcome::new(
        format!(
            "User '{}' deleted; their access token no longer works.",
            args.name
        ),
        format!("The deletion of user '{}'", args.name),
    );
    send_mutation(ctx, &a.at, args.wait.wait, a.rpc.delete_user(req), &outcome).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn generated_token_and_login_line() {
        let u = UserJson {
            name: "alice".into(),
            role: "user",
            allowed_servers: vec!["*".into()],
            access_token: Some("canopy_usr_abc".into()),
        };
        let t = created_text(&u, DEFAULT_REGISTRY);
        assert!(t.contains("\n    canopy login canopy_usr_abc\n"), "{t}");
        assert!(!t.contains("--registry"));
        let t = created_text(&u, "http://cp:9090");
        assert!(t.contains("--registry http://cp:9090"));
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            serde_json::json!({"name": "alice", "role": "user", "allowed_servers": ["*"],
                "access_token": "canopy_usr_abc"})
        );
    }

    #[test]
    fn supplied_token_is_not_echoed() {
        let u = UserJson {
            name: "bob".into(),
            role: "admin",
            allowed_servers: vec!["*".into()],
            access_token: None,
        };
        let t = created_text(&u, DEFAULT_REGISTRY);
        assert!(t.contains("canopy login <access-token>"));
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            serde_json::json!({"name": "bob", "role": "admin", "allowed_servers": ["*"]})
        );
    }

    #[test]
    fn list_and_update_show_allow_lists() {
        let users = [
            UserJson {
                name: "admin".into(),
                role: "admin",
                allowed_servers: vec!["*".into()],
                access_token: None,
            },
            UserJson {
                name: "carol".into(),
                role: "user",
                allowed_servers: vec![],
                access_token: None,
            },
        ];
        let t = list_text(&users);
        assert_eq!(
            t,
            "NAME   ROLE           ALLOWED\nadmin  admin [ADMIN]  *\ncarol  user           (none)\n"
        );
        let list = AllowList::parse_csv("gh, jira__search").unwrap();
        assert_eq!(
            update_headline("carol", false, None, Some(&list)),
            "User 'carol' may now use: gh, jira__search."
        );
        assert_eq!(
            update_headline("carol", true, None, Some(&AllowList::default())),
            "User 'carol' has a new access token; the old one no longer works; and may now use: (none)."
        );
    }
}
