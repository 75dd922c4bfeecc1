//! `create|list|update|delete user`: people who use the CLI, as `user` or `admin`.

use canopy_core::{name, token};
use canopy_proto::v1 as pb;
use serde::Serialize;

use crate::args::{CreateUserArgs, DeleteArgs, UpdateUserArgs, DEFAULT_REGISTRY};
use crate::commands::{grace_ms, send_mutation, wait_options, Ctx};
use crate::conf_file;
use crate::error::CliError;
use crate::output::role_name;

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
    ctx.emit(&users, || {
        if users.is_empty() {
            return "No users.".to_owned();
        }
        users
            .iter()
            .map(|u| {
                if u.role == "admin" {
                    format!("{} [ADMIN]", u.name)
                } else {
                    u.name.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

pub async fn update(ctx: &Ctx, args: UpdateUserArgs) -> Result<(), CliError> {
    token::validate_custom(&args.access_token)?;
    let req = pb::UpdateUserRequest {
        name: args.name.clone(),
        access_token: args.access_token,
        grace_ms: grace_ms(args.grace),
        wait: wait_options(args.wait.wait),
    };
    let mut a = ctx.admin()?;
    let call = a.rpc.update_user(req);
    let grace = match args.grace {
        Some(g) if !g.is_zero() => format!(
            "; the old one keeps working for {}",
            humantime::format_duration(g)
        ),
        _ => "; the old one no longer works".to_owned(),
    };
    let headline = format!("User '{}' has a new access token{grace}.", args.name);
    send_mutation(ctx, &a.at, args.wait.wait, call, &headline).await
}

pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> Result<(), CliError> {
    let req = pb::DeleteUserRequest {
        name: args.name.clone(),
        wait: wait_options(args.wait.wait),
    };
    let mut a = ctx.admin()?;
    let headline = format!(
        "User '{}' deleted; their access token no longer works.",
        args.name
    );
    send_mutation(
        ctx,
        &a.at,
        args.wait.wait,
        a.rpc.delete_user(req),
        &headline,
    )
    .await
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
