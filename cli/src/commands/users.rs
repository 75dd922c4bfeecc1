//! `create|list|update|delete user`: people who use the CLI, as `user` or `admin`.

use canopy_core::{name, token};
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
            }
        }
        (None, Some(name)) => {
            name::validate_principal_name("user", &name)?;
            if let Some(t) = &args.access_token {
                token::validate_custom(t)?;
            }
            pb::CreateUserRequest {
                name,
                role: args.role.to_proto() as i32,
                access_token: args.access_token.unwrap_or_default(),
            }
        }
        (None, None) => return Err(CliError::usage("give the user's name or --conf FILE")),
    };
    let mut a = ctx.admin()?;
    let resp = a.at.call(a.rpc.create_user(req.clone())).await?;
    let user = resp.user.unwrap_or(pb::UserInfo {
        name: req.name,
        role: req.role,
    });
    let json = UserJson {
        name: user.name,
        role: role_name(user.role),
        access_token: (!resp.access_token.is_empty()).then_some(resp.access_token),
    };
    let registry = a.at.registry.clone();
    ctx.emit(&json, || created_text(&json, &registry))
}

fn created_text(u: &UserJson, registry: &str) -> String {
    let mut t = format!("User '{}' created (role: {}).\n", u.name, u.role);
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
    let users: Vec<UserJson> = resp
        .users
        .into_iter()
        .map(|u| UserJson {
            name: u.name,
            role: role_name(u.role),
            access_token: None,
        })
        .collect();
    ctx.emit(&users, || users_table(&users))
}

/// NAME and ROLE, admins marked `[ADMIN]` as the reference page shows them.
fn users_table(users: &[UserJson]) -> String {
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            let role = if u.role == "admin" {
                "admin [ADMIN]".to_owned()
            } else {
                u.role.to_owned()
            };
            vec![u.name.clone(), role]
        })
        .collect();
    table(&["NAME", "ROLE"], &rows, "No users.")
}

pub async fn update(ctx: &Ctx, args: UpdateUserArgs) -> Result<(), CliError> {
    if let Some(t) = &args.access_token {
        token::validate_custom(t)?;
    }
    let token_change = args.access_token.is_some() || args.new_token;
    if !token_change && args.role.is_none() {
        // clap's argument group already demands one; kept for callers that bypass clap.
        return Err(CliError::usage(
            "give at least one of --access-token, --new-token, --role",
        ));
    }
    let req = pb::UpdateUserRequest {
        name: args.name.clone(),
        access_token: args.access_token.unwrap_or_default(),
        grace_ms: grace_ms(args.grace),
        wait: wait_options(args.wait.wait),
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
        // Data planes hold no roles: a plain write, nothing to wait for.
        let json = RoleJson {
            name: args.name.clone(),
            role: role_name(req_role(args.role)),
            revision: result.revision,
        };
        return ctx.emit(&json, || {
            format!(
                "User '{}' updated ({}) at revision {}.",
                json.name,
                role_text.unwrap_or_default(),
                json.revision
            )
        });
    }
    let grace = match args.grace {
        Some(g) if !g.is_zero() => format!(
            "; the old one keeps working for {}",
            humantime::format_duration(g)
        ),
        _ => "; the old one no longer works".to_owned(),
    };
    let also = role_text.map(|r| format!(" ({r})")).unwrap_or_default();
    let mut outcome = Outcome::new(
        format!("User '{}' has a new access token{grace}{also}.", args.name),
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

/// `update user NAME --role R` JSON: a plain write, no data-plane report.
#[derive(Debug, Serialize)]
struct RoleJson {
    name: String,
    role: &'static str,
    revision: u64,
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
            access_token: Some("canopy_usr_abc".into()),
        };
        let t = created_text(&u, DEFAULT_REGISTRY);
        assert!(t.contains("\n    canopy login canopy_usr_abc\n"), "{t}");
        assert!(!t.contains("--registry"));
        let t = created_text(&u, "http://cp:9090");
        assert!(t.contains("--registry http://cp:9090"));
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            serde_json::json!({"name": "alice", "role": "user", "access_token": "canopy_usr_abc"})
        );
    }

    #[test]
    fn users_table_has_a_header_and_marks_admins() {
        let users = [
            UserJson {
                name: "admin".into(),
                role: "admin",
                access_token: None,
            },
            UserJson {
                name: "alice".into(),
                role: "user",
                access_token: None,
            },
        ];
        assert_eq!(
            users_table(&users),
            "NAME   ROLE\nadmin  admin [ADMIN]\nalice  user\n"
        );
        assert_eq!(users_table(&[]), "No users.");
    }

    #[test]
    fn supplied_token_is_not_echoed() {
        let u = UserJson {
            name: "bob".into(),
            role: "admin",
            access_token: None,
        };
        let t = created_text(&u, DEFAULT_REGISTRY);
        assert!(t.contains("canopy login <access-token>"));
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            serde_json::json!({"name": "bob", "role": "admin"})
        );
    }
}
