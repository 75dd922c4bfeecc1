//! What a person may reach through the Admin service: the servers, tools and prompts that
//! `list servers|tools|prompts`, `usage` and `invoke` show or call.
//!
//! One function decides ([`caller_scope`]); every read and invoke path filters with its
//! answer, and anything outside it is answered exactly like something that does not
//! exist. Another kind of principal (e.g. a person signed in through SSO) plugs in here by
//! carrying its own allow list on [`Caller`].

use super::auth::Caller;
use crate::store::Role;
use canopy_core::AllowList;

/// The caller's scope: admins (and development mode, which has no users) reach
/// everything; a user reaches their allow list.
pub(super) fn caller_scope(caller: &Caller) -> AllowList {
    match caller.role {
        Role::Admin => AllowList::everything(),
        Role::User => caller.allowed.clone(),
    }
}

/// The allow list a user record shows in listings: the one [`caller_scope`] enforces.
pub(super) fn shown_allow_list(role: Role, stored: &[String]) -> Vec<String> {
    match role {
        Role::Admin => AllowList::everything().to_strings(),
        Role::User => stored.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, allowed: &str) -> Caller {
        Caller {
            name: Some("x".into()),
            role,
            allowed: AllowList::parse_csv(allowed).unwrap_or_default(),
            sso: None,
        }
    }

    #[test]
    fn admins_reach_everything_users_their_list() {
        assert!(caller_scope(&caller(Role::Admin, "")).allows_all());
        let user = caller_scope(&caller(Role::User, "gh__search"));
        assert!(user.allows_tool("gh", "search") && !user.allows_tool("gh", "delete"));
        assert!(caller_scope(&caller(Role::User, "")).is_empty());
        assert_eq!(shown_allow_list(Role::Admin, &[]), vec!["*"]);
        assert_eq!(shown_allow_list(Role::User, &["gh".into()]), vec!["gh"]);
    }
}
