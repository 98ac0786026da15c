//! Events for other services: written beside the audit record of each change (see `audit::record`)
//! into the `events` outbox, published by the relay (`jobs::relay`), read back over the server feed.

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::audit::Action;
use super::views::{LinkedAccount, UserView};
use crate::error::{AppError, AppResult, FieldError};
use crate::repo::events::{self as repo, EventRow, NewEvent};
use crate::state::AppState;

/// The envelope: the body of each published message and each item of the feed.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub user_id: Option<Uuid>,
    pub data: Value,
}

impl From<EventRow> for Envelope {
    fn from(r: EventRow) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            occurred_at: r.occurred_at,
            actor: r.actor,
            user_id: r.user_id,
            data: r.data,
        }
    }
}

/// Writes the event of a change (none for an action other services do not hear of), its `data`
/// built from the state the change left in this transaction and from the audit record's details
/// (which fields changed, the previous role, the linked account, the request). Never a secret:
/// users are the contract's user object. The match is over every action, so a new one must say
/// what its event carries.
pub(super) async fn write(
    conn: &mut PgConnection,
    actor: &str,
    action: Action,
    user_id: Option<Uuid>,
    details: &Value,
) -> sqlx::Result<()> {
    let Some(kind) = action.event() else {
        return Ok(());
    };
    let data = match action {
        Action::SignUp
        | Action::CreateUser
        | Action::EmailVerify
        | Action::SoftDelete
        | Action::Restore => json!({ "user": user_view(conn, user_id).await? }),
        Action::ProfileUpdate | Action::ContactsUpdate => json!({
            "user": user_view(conn, user_id).await?,
            "changed": details["fields"],
        }),
        Action::RoleChange => json!({
            "user": user_view(conn, user_id).await?,
            "previous_role": details["from"],
        }),
        Action::Link | Action::LinkUpdate => {
            let link = match (user_id, uuid_in(details, "linked_account_id")) {
                (Some(user_id), Some(id)) => {
                    crate::repo::linked_accounts::find_own(&mut *conn, user_id, id).await?
                }
                _ => None,
            };
            json!({"linked_account": link.map(LinkedAccount::from)})
        }
        Action::Unlink => json!({
            "linked_account_id": details["linked_account_id"],
            "social_network": details["social_network"],
        }),
        Action::RoleRequestCreate
        | Action::RoleRequestCancel
        | Action::RoleRequestApprove
        | Action::RoleRequestReject => {
            let request = match uuid_in(details, "role_request_id") {
                Some(id) => crate::repo::role_requests::find(&mut *conn, id).await?,
                None => None,
            };
            json!({"role_request": request.map(super::role_requests::RoleRequest::from)})
        }
        Action::PasswordChange
        | Action::PasswordReset
        | Action::PermanentDelete
        | Action::Login
        | Action::LoginFailed
        | Action::Logout
        | Action::SessionRevoke
        | Action::SessionsRevokeAll
        | Action::RefreshReuse
        | Action::ResetTokenIssue
        | Action::EmailVerificationSent
        | Action::MfaEnrol
        | Action::MfaEnable
        | Action::MfaRecoveryCodesRegenerate
        | Action::MfaDisable
        | Action::RecoveryCodeUse
        | Action::PasskeyRename
        | Action::PasskeyCounterRegression
        | Action::Export => json!({}),
        // the passkey as the list shows it (recorded in the details: a removed one is gone)
        Action::PasskeyRegister | Action::PasskeyDelete => json!({"passkey": details["passkey"]}),
    };
    repo::insert(
        conn,
        &NewEvent {
            id: Uuid::now_v7(),
            kind,
            actor,
            user_id,
            data: &data,
        },
    )
    .await
}

/// One event per user for a batch change (the purge: `user.purged`, data `{}`).
pub(super) async fn write_many(
    conn: &mut PgConnection,
    actor: &str,
    kind: &'static str,
    user_ids: &[Uuid],
) -> sqlx::Result<()> {
    let ids: Vec<Uuid> = user_ids.iter().map(|_| Uuid::now_v7()).collect();
    repo::insert_many(conn, &ids, kind, actor, user_ids, &json!({})).await
}

async fn user_view(conn: &mut PgConnection, id: Option<Uuid>) -> sqlx::Result<Option<UserView>> {
    let Some(id) = id else {
        return Ok(None);
    };
    let found = crate::repo::users::find_with_links(conn, id).await?;
    Ok(found.map(|u| UserView::new(u.user, u.links)))
}

fn uuid_in(details: &Value, key: &str) -> Option<Uuid> {
    details[key].as_str()?.parse().ok()
}

/// A page of the feed, oldest first, and the cursor to continue after (none on a short page). An
/// `after` that is not a kept event is a 422 naming it.
pub async fn feed(
    state: &AppState,
    after: Option<Uuid>,
    limit: i64,
) -> AppResult<(Vec<Envelope>, Option<Uuid>)> {
    if let Some(after) = after {
        if !repo::exists(&state.db, after).await? {
            return Err(AppError::Validation(vec![FieldError::new(
                "after",
                "not the id of a kept event",
            )]));
        }
    }
    let rows = repo::page(&state.db, after, limit).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok((rows.into_iter().map(Into::into).collect(), next))
}

/// Events waiting for the relay (the `outbox_pending{outbox="events"}` gauge); 0 with publishing
/// off (`events.amqp_url` empty), where nothing waits for a relay and an alert on a growing backlog
/// would fire for events kept only for the feed.
pub async fn backlog(state: &AppState) -> AppResult<i64> {
    if state.settings.events.amqp_url.expose_secret().is_empty() {
        return Ok(0);
    }
    Ok(repo::count_unpublished(&state.db).await?)
}
