//! Password change, reset tokens, and reset.

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Action, Caller};
use super::mail::{self, Context, Kind};
use super::rate_limit::Budget;
use super::{users, Principal};
use crate::auth::jwt::token_hash;
use crate::auth::random_token;
use crate::domain::Email;
use crate::error::{AppError, AppResult};
use crate::repo::{self, users::UserRow};
use crate::state::AppState;

/// Changes the caller's password and revokes every other session.
pub async fn change(
    state: &AppState,
    caller: &Caller,
    p: &Principal,
    current: &SecretString,
    new: &SecretString,
) -> AppResult<()> {
    let user = users::get(state, p.user_id).await?;
    super::auth::confirm_password(state, caller, &user, current).await?;
    let hash = state.passwords.hash_new(new, &policy_inputs(&user)).await?;
    let mut tx = state.db.begin().await?;
    repo::users::set_password_hash(&mut *tx, user.id, &hash).await?;
    let revoked = repo::sessions::revoke_all(&mut *tx, user.id, Some(p.session_id)).await?;
    repo::reset_tokens::kill_unused(&mut *tx, user.id).await?;
    audit::record(
        &mut tx,
        caller,
        Action::PasswordChange,
        Some(user.id),
        json!({"sessions_revoked": revoked}),
    )
    .await?;
    mail::notice(
        &mut tx,
        state,
        Kind::PasswordChanged,
        &user,
        Context::default(),
    )
    .await?;
    password_changed_notice(&mut tx, user.id).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "password changed");
    Ok(())
}

/// The in-app notice of a password change or reset (beside the mail).
async fn password_changed_notice(conn: &mut sqlx::PgConnection, user_id: Uuid) -> sqlx::Result<()> {
    super::notifications::notify(
        conn,
        user_id,
        &super::notifications::Notice {
            kind: "password.changed",
            title: "Your password was changed",
            body: Some("If this was not you, reset your password and sign out other sessions."),
            link: None,
            data: None,
        },
    )
    .await
    .map(|_| ())
}

/// Who a reset token is for.
pub enum ResetTarget {
    Email(Email),
    UserId(Uuid),
}

/// A fresh reset token (256 random bits); only its hash is stored.
pub async fn issue_reset_token(
    state: &AppState,
    caller: &Caller,
    target: ResetTarget,
) -> AppResult<(String, DateTime<Utc>)> {
    let user = match target {
        ResetTarget::Email(email) => repo::users::find_by_email(&state.db, email.as_str()).await?,
        ResetTarget::UserId(id) => repo::users::find_by_id(&state.db, id).await?,
    }
    .ok_or_else(AppError::user_not_found)?;
    let token = random_token();
    let expires_at = Utc::now() + Duration::seconds(state.settings.auth.reset_token_ttl_secs);
    let mut tx = state.db.begin().await?;
    repo::reset_tokens::kill_unused(&mut *tx, user.id).await?;
    repo::reset_tokens::insert(&mut *tx, &token_hash(&token), user.id, expires_at).await?;
    audit::record(
        &mut tx,
        caller,
        Action::ResetTokenIssue,
        Some(user.id),
        json!({"expires_at": expires_at}),
    )
    .await?;
    tx.commit().await?;
    Ok((token, expires_at))
}

/// The public "forgot my password": answers at once, the same for every address (202), and does
/// the work after the answer, so neither the body, the status nor the time tells whether the
/// address has an account. An active account with a deliverable address gets a `password_reset`
/// mail, at most one per `email.min_interval_secs`; everything else gets nothing.
/// The work after the answer is bounded (`FORGOT_JOBS` at once): a flood from many addresses
/// cannot pile up tasks; beyond it a request is dropped with a warning.
pub async fn forgot(state: &AppState, ip: std::net::IpAddr, email: Email) -> AppResult<()> {
    state.limits.check(Budget::Forgot, ip).await?;
    let Ok(permit) = state.forgot_jobs.clone().try_acquire_owned() else {
        tracing::warn!("forgot-password work is saturated; request dropped");
        return Ok(());
    };
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = send_reset_link(&state, ip, &email).await {
            tracing::warn!(error = %e, "forgot-password mail not written");
        }
        drop(permit);
    });
    Ok(())
}

/// Every address costs the same queries up to the decision (lookup, transaction, interval check),
/// so the database load tells nothing either.
async fn send_reset_link(state: &AppState, ip: std::net::IpAddr, email: &Email) -> AppResult<()> {
    let user = repo::users::find_by_email(&state.db, email.as_str())
        .await?
        .filter(|u| !u.is_deleted() && mail::deliverable(&u.email));
    let mut tx = state.db.begin().await?;
    let interval = state.settings.email.min_interval_secs;
    let someone = user.as_ref().map_or(Uuid::nil(), |u| u.id);
    let recent = mail::sent_recently(&mut tx, someone, Kind::PasswordReset, interval).await?;
    let Some(user) = user.filter(|_| !recent) else {
        return Ok(());
    };
    let token = random_token();
    let ttl = state.settings.auth.reset_token_ttl_secs;
    let expires_at = Utc::now() + Duration::seconds(ttl);
    repo::reset_tokens::kill_unused(&mut *tx, user.id).await?;
    repo::reset_tokens::insert(&mut *tx, &token_hash(&token), user.id, expires_at).await?;
    let caller = Caller::anonymous(ip);
    let details = json!({"expires_at": expires_at, "via": "forgot"});
    audit::record(
        &mut tx,
        &caller,
        Action::ResetTokenIssue,
        Some(user.id),
        details,
    )
    .await?;
    let ctx = Context {
        link: Some(state.mail.link("reset-password", Some(&token))),
        minutes: Some(ttl / 60),
        ..Context::default()
    };
    mail::notice(&mut tx, state, Kind::PasswordReset, &user, ctx).await?;
    tx.commit().await?;
    Ok(())
}

/// Sets a new password with a reset token: the token is used up, every session revoked, and the
/// login lockout for the account lifted.
pub async fn reset(
    state: &AppState,
    caller: &Caller,
    token: &str,
    password: &SecretString,
) -> AppResult<()> {
    let hash = token_hash(token);
    let user_id = repo::reset_tokens::usable_user(&state.db, &hash)
        .await?
        .ok_or(AppError::InvalidResetToken)?;
    let user = users::get(state, user_id).await?;
    let new_hash = state
        .passwords
        .hash_new(password, &policy_inputs(&user))
        .await?;
    let mut tx = state.db.begin().await?;
    if !repo::reset_tokens::consume(&mut *tx, &hash).await? {
        return Err(AppError::InvalidResetToken);
    }
    repo::users::set_password_hash(&mut *tx, user.id, &new_hash).await?;
    let revoked = repo::sessions::revoke_all(&mut *tx, user.id, None).await?;
    repo::login_throttle::clear(&mut *tx, &user.email.to_lowercase()).await?;
    repo::reset_tokens::kill_unused(&mut *tx, user.id).await?;
    audit::record(
        &mut tx,
        caller,
        Action::PasswordReset,
        Some(user.id),
        json!({"sessions_revoked": revoked}),
    )
    .await?;
    mail::notice(
        &mut tx,
        state,
        Kind::PasswordChanged,
        &user,
        Context::default(),
    )
    .await?;
    password_changed_notice(&mut tx, user.id).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "password reset");
    Ok(())
}

fn policy_inputs(user: &UserRow) -> Vec<&str> {
    let mut inputs = vec![user.email.as_str(), user.first_name.as_str()];
    inputs.extend(user.last_name.as_deref());
    inputs
}
