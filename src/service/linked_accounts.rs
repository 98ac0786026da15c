//! Linked social accounts: links added by hand (a profile page) and provider identities that sign
//! in. The same functions serve the private routes (the caller's own) and the server routes (any user).

use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::audit::{self, Action, Caller};
use super::users::live_user;
use super::views::{LinkedAccount, UserView};
use crate::domain::SocialNetwork;
use crate::error::{AppError, AppResult};
use crate::repo::{self, linked_accounts::LinkedAccountRow, users::UserRow};
use crate::state::AppState;

pub async fn view(state: &AppState, user: UserRow) -> AppResult<UserView> {
    let links = repo::linked_accounts::for_users(&state.db, &[user.id]).await?;
    Ok(UserView::new(user, links))
}

/// Links a profile page by hand: an https URL on one of the network's hosts; 409 when linked already.
pub async fn link(
    state: &AppState,
    caller: &Caller,
    user_id: Uuid,
    network: SocialNetwork,
    link: &str,
    connected_for: Option<&str>,
) -> AppResult<LinkedAccount> {
    let link = network
        .check_link(link)
        .map_err(AppError::LinkNotOfNetwork)?;
    let mut tx = state.db.begin().await?;
    live_user(&mut tx, user_id).await?;
    let row = insert(
        &mut tx,
        caller,
        user_id,
        network,
        &link,
        connected_for,
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(row.into())
}

/// Inserts a linked account (an identity when `external_id` is set) and audits it.
pub async fn insert(
    conn: &mut PgConnection,
    caller: &Caller,
    user_id: Uuid,
    network: SocialNetwork,
    link: &str,
    connected_for: Option<&str>,
    external_id: Option<&str>,
) -> AppResult<LinkedAccountRow> {
    let row = repo::linked_accounts::insert(
        &mut *conn,
        &repo::linked_accounts::NewLink {
            user_id,
            social_network: network,
            connection_link: link,
            connected_for,
            external_id,
        },
    )
    .await?;
    let details = json!({"linked_account_id": row.id, "social_network": network, "identity": external_id.is_some()});
    audit::record(&mut *conn, caller, Action::Link, Some(user_id), details).await?;
    Ok(row)
}

pub async fn update_connected_for(
    state: &AppState,
    caller: &Caller,
    user_id: Uuid,
    id: Uuid,
    connected_for: Option<&str>,
) -> AppResult<LinkedAccount> {
    let mut tx = state.db.begin().await?;
    live_user(&mut tx, user_id).await?;
    repo::linked_accounts::find_own(&mut *tx, user_id, id)
        .await?
        .ok_or_else(not_found)?;
    let row = repo::linked_accounts::set_connected_for(&mut *tx, id, connected_for).await?;
    audit::record(
        &mut tx,
        caller,
        Action::LinkUpdate,
        Some(user_id),
        json!({"linked_account_id": id}),
    )
    .await?;
    tx.commit().await?;
    Ok(row.into())
}

/// Unlinks; removing the last way to sign in (no password, no passkey, one identity) is 400
/// `last_login_method`.
/// The user's row is locked, so two concurrent unlinks cannot both pass the check.
pub async fn unlink(state: &AppState, caller: &Caller, user_id: Uuid, id: Uuid) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let user = live_user(&mut tx, user_id).await?;
    let row = repo::linked_accounts::find_own(&mut *tx, user_id, id)
        .await?
        .ok_or_else(not_found)?;
    if row.external_id.is_some()
        && user.password_hash.is_none()
        && repo::linked_accounts::count_identities(&mut *tx, user_id).await? <= 1
        && repo::passkeys::count_usable(&mut *tx, user_id).await? == 0
    {
        return Err(AppError::LastLoginMethod);
    }
    repo::linked_accounts::delete(&mut *tx, id).await?;
    let details = json!({"linked_account_id": id, "social_network": row.social_network});
    audit::record(&mut tx, caller, Action::Unlink, Some(user_id), details).await?;
    tx.commit().await?;
    Ok(())
}

fn not_found() -> AppError {
    AppError::NotFound("linked_account_not_found", "no such linked account")
}
