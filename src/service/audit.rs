//! Who did what: every state change writes one record, inside the change's own transaction, and
//! the changes other services hear of write their event beside it (`events`), so no route can
//! record a change and forget to announce it.

use std::fmt;
use std::net::IpAddr;

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::views::AuditEntry;
use crate::error::AppResult;
use crate::repo::audit::{self, NewAudit};
use crate::state::AppState;

/// The actor of a change: `user:<id>`, `server:<key name>`, `system` (the purge job), or
/// `anonymous` for a failed sign-in, where nobody has proven who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(Uuid),
    Server(String),
    System,
    Anonymous,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(id) => write!(f, "user:{id}"),
            Actor::Server(name) => write!(f, "server:{name}"),
            Actor::System => f.write_str("system"),
            Actor::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// The caller of an operation, as the audit log records it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    pub ip: Option<IpAddr>,
}

impl Caller {
    /// Someone not (yet) known to be a user, from this address.
    pub fn anonymous(ip: IpAddr) -> Self {
        Self {
            actor: Actor::Anonymous,
            ip: Some(ip),
        }
    }

    /// This user, from this address.
    pub fn user(id: Uuid, ip: IpAddr) -> Self {
        Self {
            actor: Actor::User(id),
            ip: Some(ip),
        }
    }

    pub fn system() -> Self {
        Self {
            actor: Actor::System,
            ip: None,
        }
    }

    /// The same request, now known to be this user (after a successful sign-in).
    pub fn as_user(&self, id: Uuid) -> Self {
        Self {
            actor: Actor::User(id),
            ip: self.ip,
        }
    }
}

/// The actions the audit log knows, with their stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SignUp,
    CreateUser,
    Login,
    LoginFailed,
    Logout,
    SessionRevoke,
    SessionsRevokeAll,
    RefreshReuse,
    PasswordChange,
    ResetTokenIssue,
    PasswordReset,
    ProfileUpdate,
    ContactsUpdate,
    RoleChange,
    SoftDelete,
    PermanentDelete,
    Restore,
    Link,
    Unlink,
    LinkUpdate,
    EmailVerify,
    EmailVerificationSent,
    RoleRequestCreate,
    RoleRequestCancel,
    RoleRequestApprove,
    RoleRequestReject,
    MfaEnrol,
    MfaEnable,
    MfaRecoveryCodesRegenerate,
    MfaDisable,
    RecoveryCodeUse,
    PasskeyRegister,
    PasskeyRename,
    PasskeyDelete,
    /// a passkey's signature counter went back: possibly a cloned authenticator
    PasskeyCounterRegression,
    Export,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SignUp => "user.sign_up",
            Action::CreateUser => "user.create",
            Action::Login => "auth.login",
            Action::LoginFailed => "auth.login_failed",
            Action::Logout => "session.logout",
            Action::SessionRevoke => "session.revoke",
            Action::SessionsRevokeAll => "session.revoke_all",
            Action::RefreshReuse => "session.refresh_reuse",
            Action::PasswordChange => "user.password_change",
            Action::ResetTokenIssue => "user.reset_token_issue",
            Action::PasswordReset => "user.password_reset",
            Action::ProfileUpdate => "user.profile_update",
            Action::ContactsUpdate => "user.contacts_update",
            Action::RoleChange => "user.role_change",
            Action::SoftDelete => "user.soft_delete",
            Action::PermanentDelete => "user.permanent_delete",
            Action::Restore => "user.restore",
            Action::Link => "linked_account.link",
            Action::Unlink => "linked_account.unlink",
            Action::LinkUpdate => "linked_account.update",
            Action::EmailVerify => "user.email_verify",
            Action::EmailVerificationSent => "user.email_verification_sent",
            Action::RoleRequestCreate => "role_request.create",
            Action::RoleRequestCancel => "role_request.cancel",
            Action::RoleRequestApprove => "role_request.approve",
            Action::RoleRequestReject => "role_request.reject",
            Action::MfaEnrol => "mfa.enrol",
            Action::MfaEnable => "mfa.enable",
            Action::MfaRecoveryCodesRegenerate => "mfa.recovery_codes_regenerate",
            Action::MfaDisable => "mfa.disable",
            Action::RecoveryCodeUse => "mfa.recovery_code_use",
            Action::PasskeyRegister => "passkey.register",
            Action::PasskeyRename => "passkey.rename",
            Action::PasskeyDelete => "passkey.delete",
            Action::PasskeyCounterRegression => "passkey.counter_regression",
            Action::Export => "user.export",
        }
    }

    /// The event type other services hear of this change as, if they do.
    pub fn event(self) -> Option<&'static str> {
        Some(match self {
            Action::SignUp | Action::CreateUser => "user.created",
            Action::ProfileUpdate | Action::ContactsUpdate => "user.updated",
            Action::EmailVerify => "user.email_verified",
            Action::RoleChange => "user.role_changed",
            Action::PasswordChange | Action::PasswordReset => "user.password_changed",
            Action::SoftDelete => "user.deleted",
            Action::Restore => "user.restored",
            Action::PermanentDelete => "user.purged",
            Action::Link => "linked_account.linked",
            Action::LinkUpdate => "linked_account.updated",
            Action::Unlink => "linked_account.unlinked",
            Action::RoleRequestCreate => "role_request.created",
            Action::RoleRequestCancel => "role_request.cancelled",
            Action::RoleRequestApprove => "role_request.approved",
            Action::RoleRequestReject => "role_request.rejected",
            Action::MfaEnable => "user.mfa_enabled",
            Action::MfaDisable => "user.mfa_disabled",
            Action::PasskeyRegister => "user.passkey_added",
            Action::PasskeyDelete => "user.passkey_removed",
            Action::Login
            | Action::LoginFailed
            | Action::Logout
            | Action::SessionRevoke
            | Action::SessionsRevokeAll
            | Action::RefreshReuse
            | Action::ResetTokenIssue
            | Action::EmailVerificationSent
            | Action::MfaEnrol
            | Action::MfaRecoveryCodesRegenerate
            | Action::RecoveryCodeUse
            | Action::PasskeyRename
            | Action::PasskeyCounterRegression
            | Action::Export => return None,
        })
    }
}

/// Writes one record, and the change's event if it has one. Call it with the transaction that
/// makes the change, after the change (the event shows the user as the change left them).
pub async fn record(
    conn: &mut PgConnection,
    caller: &Caller,
    action: Action,
    target: Option<Uuid>,
    details: Value,
) -> sqlx::Result<()> {
    let actor = caller.actor.to_string();
    let ip = caller.ip.map(|ip| ip.to_string());
    super::events::write(&mut *conn, &actor, action, target, &details).await?;
    audit::insert(
        conn,
        &NewAudit {
            actor: &actor,
            action: action.as_str(),
            target_user_id: target,
            ip: ip.as_deref(),
            details: &details,
        },
    )
    .await
}

/// One record per user for a batch change (the purge), in one statement, and one event each.
pub async fn record_many(
    conn: &mut PgConnection,
    caller: &Caller,
    action: Action,
    targets: &[Uuid],
    details: Value,
) -> sqlx::Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let actor = caller.actor.to_string();
    let ip = caller.ip.map(|ip| ip.to_string());
    if let Some(kind) = action.event() {
        super::events::write_many(&mut *conn, &actor, kind, targets).await?;
    }
    audit::insert_many(
        conn,
        &actor,
        action.as_str(),
        targets,
        ip.as_deref(),
        &details,
    )
    .await
}

/// A page of records, newest first, optionally about one user or of one action.
pub async fn list(
    state: &AppState,
    user_id: Option<Uuid>,
    action: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> AppResult<(Vec<AuditEntry>, Option<Uuid>)> {
    let rows = audit::page(&state.db, user_id, action, before, limit + 1).await?;
    let (rows, next) = super::split_page(rows, limit, |r| r.id);
    Ok((rows.into_iter().map(Into::into).collect(), next))
}
