//! Who is calling, and may they do this?
//!
//! Rights (enterprise mode): `user` may read servers/tools/prompts, invoke tools (within
//! their allow list, see `scope`) and ask who they are; `admin` may do everything. Development mode needs no token for
//! server and tool calls and refuses user/client calls.

use super::{AdminError, AdminService};
use crate::store::{Mode, Principal, Role, StoreError};
use canopy_core::AllowList;
use tonic::metadata::MetadataMap;

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// Read servers/tools/prompts, invoke tools: any user; open in development mode.
    Read,
    /// Change servers, list data planes: admins; open in development mode.
    Admin,
    /// WhoAmI: any user; enterprise mode only.
    Identity,
    /// Manage users and MCP clients: admins; enterprise mode only.
    IdentityAdmin,
}

/// The authenticated caller. In development mode there is no user: `name` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Caller {
    pub name: Option<String>,
    pub role: Role,
    /// The principal's own allow list; what it may reach is decided by
    /// [`super::scope::caller_scope`].
    pub allowed: AllowList,
    /// Set for a person signed in through an identity provider (`name` is their subject).
    pub sso: Option<SsoIdentity>,
}

/// Who an identity provider's access token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SsoIdentity {
    pub idp: String,
    pub subject: String,
}

/// The bearer token of `authorization` metadata, if any ([`canopy_core::bearer`]).
fn bearer(metadata: &MetadataMap) -> Option<&str> {
    canopy_core::bearer::token(metadata.get("authorization")?.to_str().ok()?)
}

impl AdminService {
    /// Who is calling, if they may do what `need` says; the audit trail is told either way
    /// (see `audited.rs`).
    pub(super) fn authorize(
        &self,
        metadata: &MetadataMap,
        need: Need,
    ) -> Result<Caller, AdminError> {
        let result = self.check_caller(metadata, need);
        self.note_authorization(&result);
        result
    }

    fn check_caller(&self, metadata: &MetadataMap, need: Need) -> Result<Caller, AdminError> {
        if self.store.mode() == Mode::Development {
            return match need {
                Need::Read | Need::Admin => Ok(Caller {
                    name: None,
                    role: Role::Admin,
                    allowed: AllowList::everything(),
                    sso: None,
                }),
                Need::Identity | Need::IdentityAdmin => Err(AdminError::NeedsEnterprise),
            };
        }
        let Some(token) = bearer(metadata) else {
            if !self.store.initialized()? {
                return Err(AdminError::NotInitialized);
            }
            return Err(AdminError::Unauthenticated(
                "missing access token; log in with `canopy login <token>` or `canopy login --sso`",
            ));
        };
        // Static user tokens first (one hash lookup); then an identity provider's JWT.
        let caller = match self.user_for(token)? {
            Some(c) => c,
            None => self.sso_caller(token)?.ok_or(AdminError::Unauthenticated(
                "invalid or expired access token",
            ))?,
        };
        if caller.role != Role::Admin && matches!(need, Need::Admin | Need::IdentityAdmin) {
            let name = caller.name.as_deref().unwrap_or_default();
            return Err(AdminError::PermissionDenied(format!(
                "user '{name}' has role user; this command needs an admin"
            )));
        }
        Ok(caller)
    }

    /// The user holding `token`, if it is a live user token.
    fn user_for(&self, token: &str) -> Result<Option<Caller>, AdminError> {
        let hash = self.store.hasher().hash(token);
        // MCP-client tokens are indexed too but never authenticate admin calls.
        let Some(Principal::User(name)) = self.store.principal(&hash)? else {
            return Ok(None);
        };
        let Some(user) = self.store.user(&name)? else {
            return Ok(None);
        };
        let now = crate::clock::now_ms();
        let valid = user
            .tokens
            .iter()
            .any(|t| t.is_live(now) && t.hash.ct_eq(&hash));
        if !valid {
            return Ok(None);
        }
        // Stored lists are canonical; one that does not parse is a damaged record.
        let allowed = AllowList::from_entries(&user.allowed)
            .map_err(|e| StoreError::Decode(format!("allow list of user '{name}': {e}")))?;
        Ok(Some(Caller {
            name: Some(user.name),
            role: user.role,
            allowed,
            sso: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_metadata() {
        let mut m = MetadataMap::new();
        assert_eq!(bearer(&m), None);
        m.insert("authorization", "Bearer abc".parse().expect("ascii"));
        assert_eq!(bearer(&m), Some("abc"));
        m.insert("authorization", "bearer xyz ".parse().expect("ascii"));
        assert_eq!(bearer(&m), Some("xyz"));
        // One rule everywhere (canopy_core::bearer): more than one space is refused.
        m.insert("authorization", "Bearer   xyz".parse().expect("ascii"));
        assert_eq!(bearer(&m), None);
        m.insert("authorization", "Basic abc".parse().expect("ascii"));
        assert_eq!(bearer(&m), None);
    }
}
