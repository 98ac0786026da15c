//! Role-change requests: a user asks for another role, an admin approves (the role changes in the
//! same transaction, through the same code as `PUT admin/users/{id}/role`) or rejects.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Action, Caller};
use super::notifications::{self, Notice};
use super::Principal;
use crate::domain::Role;
use crate::error::{AppError, AppResult, FieldError};
use crate::repo::role_requests::{self as repo, RoleRequestRow};
use crate::state::AppState;

/// A request as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RoleRequest {
    pub id: Uuid,
    pub user_id: Uuid,
    pub current_role: Role,
    pub requested_role: Role,
    pub reason: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<Uuid>,
    pub comment: Option<String>,
}

impl From<RoleRequestRow> for RoleRequest {
    fn from(r: RoleRequestRow) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            current_role: r.from_role,
            requested_role: r.requested_role,
            reason: r.reason,
            status: r.status,
            created_at: r.created_at,
            decided_at: r.decided_at,
            decided_by: r.decided_by,
            comment: r.comment,
        }
    }
}

fn not_found() -> AppError {
    AppError::NotFound("role_request_not_found", "no such role request")
}

/// Asks for `role`: 422 for the role the user has, 409 `request_pending` while one is pending.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    p: &Principal,
    role: Role,
    reason: &str,
) -> AppResult<RoleRequest> {
    let mut tx = state.db.begin().await?;
    let user = crate::repo::users::lock(&mut tx, p.user_id)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    if user.role == role {
        return Err(AppError::Validation(vec![FieldError::new(
            "role",
            "the user has this role already",
        )]));
    }
    let request: RoleRequest = repo::insert(&mut *tx, user.id, user.role, role, reason.trim())
        .await?
        .ok_or(AppError::Conflict(
            "request_pending",
            "a role request of this user is pending already",
        ))?
        .into();
    audit::record(
        &mut tx,
        caller,
        Action::RoleRequestCreate,
        Some(user.id),
        json!({"role_request_id": request.id, "requested_role": role}),
    )
    .await?;
    notifications::notify_admins(
        &mut tx,
        &Notice {
            kind: "role_request.created",
            title: "A role change was requested",
            body: Some(&format!(
                "{} asks to become {}: {}",
                user.email, role, request.reason
            )),
            link: Some("/admin/role-requests"),
            data: Some(
                &json!({"role_request_id": request.id, "user_id": user.id, "requested_role": role}),
            ),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(request)
}

/// A page of requests, newest first (the user's own, or any for an admin), and the id to continue
/// before.
pub async fn list(
    state: &AppState,
    user_id: Option<Uuid>,
    status: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> AppResult<(Vec<RoleRequest>, Option<Uuid>)> {
    let rows = repo::page(&state.db, user_id, status, before, limit + 1).await?;
    let (rows, next) = super::split_page(rows, limit, |r| r.id);
    Ok((rows.into_iter().map(Into::into).collect(), next))
}

/// The user withdraws their pending request.
pub async fn cancel(
    state: &AppState,
    caller: &Caller,
    p: &Principal,
    id: Uuid,
) -> AppResult<RoleRequest> {
    let mut tx = state.db.begin().await?;
    let request = repo::lock(&mut tx, id)
        .await?
        .filter(|r| r.user_id == p.user_id)
        .ok_or_else(not_found)?;
    if request.status != "pending" {
        return Err(AppError::RequestNotPending);
    }
    let request: RoleRequest = repo::decide(&mut *tx, id, "cancelled", None, None)
        .await?
        .into();
    audit::record(
        &mut tx,
        caller,
        Action::RoleRequestCancel,
        Some(p.user_id),
        json!({"role_request_id": id}),
    )
    .await?;
    tx.commit().await?;
    Ok(request)
}

/// An admin's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

/// Decides a pending request. Approval changes the role in the same transaction as `PUT
/// admin/users/{id}/role` does (`last_admin`, its audit record, sessions carrying the new role from
/// their next refresh). Two admins deciding at once: the request row is locked, the second finds it
/// decided (400 `request_not_pending`).
pub async fn decide(
    state: &AppState,
    caller: &Caller,
    admin: &Principal,
    id: Uuid,
    decision: Decision,
    comment: Option<&str>,
) -> AppResult<RoleRequest> {
    let mut tx = state.db.begin().await?;
    let request = repo::lock(&mut tx, id).await?.ok_or_else(not_found)?;
    if request.user_id == admin.user_id {
        return Err(AppError::Forbidden);
    }
    if request.status != "pending" {
        return Err(AppError::RequestNotPending);
    }
    let (status, action, kind, title) = match decision {
        Decision::Approve => {
            let user = super::lifecycle::change_role(
                &mut tx,
                caller,
                request.user_id,
                request.requested_role,
            )
            .await?;
            // read under change_role's lock: a delete cannot slip in (the change rolls back)
            if user.is_deleted() {
                return Err(AppError::AlreadyDeleted);
            }
            (
                "approved",
                Action::RoleRequestApprove,
                "role_request.approved",
                "Your role request was approved",
            )
        }
        Decision::Reject => (
            "rejected",
            Action::RoleRequestReject,
            "role_request.rejected",
            "Your role request was rejected",
        ),
    };
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    let decided: RoleRequest = repo::decide(&mut *tx, id, status, Some(admin.user_id), comment)
        .await?
        .into();
    audit::record(
        &mut tx,
        caller,
        action,
        Some(request.user_id),
        json!({"role_request_id": id, "requested_role": request.requested_role}),
    )
    .await?;
    notifications::notify(
        &mut tx,
        request.user_id,
        &Notice {
            kind,
            title,
            body: comment,
            link: None,
            data: Some(&json!({"role_request_id": id, "requested_role": request.requested_role})),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(decided)
}
