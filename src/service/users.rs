//! Accounts: sign-up (public, server, CLI), creation without a password, reading, search, and
//! profile and contact changes (one function each, whichever route group reaches it).

use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Action, Actor, Caller};
use super::mail;
use super::rate_limit::Budget;
use super::views::UserView;
use crate::auth::jwt::token_hash;
use crate::domain::{clean_name, Email, Phone, Role, UserStatus};
use crate::error::{AppError, AppResult};
use crate::repo::{self, users::UserRow};
use crate::state::AppState;

/// A new account's profile, as the caller gave it: names are trimmed (an empty optional one
/// dropped) when it is stored, whichever route it came from.
pub struct Profile {
    pub email: Email,
    pub first_name: String,
    pub last_name: Option<String>,
    pub middle_name: Option<String>,
    pub phone: Option<Phone>,
    pub role: Role,
}

/// Creates a user with a password (public or server sign-up, the CLI). The unique indexes decide
/// races: of concurrent sign-ups with one email exactly one commits, the rest get 409.
pub async fn sign_up(
    state: &AppState,
    caller: &Caller,
    profile: Profile,
    password: &SecretString,
) -> AppResult<UserRow> {
    let mut inputs = vec![profile.email.as_str(), profile.first_name.as_str()];
    inputs.extend(profile.last_name.as_deref());
    let hash = state.passwords.hash_new(password, &inputs).await?;
    create(state, caller, &profile, Some(&hash), Action::SignUp).await
}

/// The public sign-up: only while `auth.public_sign_up` is on, within the caller's per-IP budget.
pub async fn public_sign_up(
    state: &AppState,
    caller: &Caller,
    profile: Profile,
    password: &SecretString,
) -> AppResult<UserRow> {
    if !state.settings.auth.public_sign_up {
        return Err(AppError::SignUpDisabled);
    }
    if let Some(ip) = caller.ip {
        state.limits.check(Budget::SignUp, ip).await?;
    }
    sign_up(state, caller, profile, password).await
}

/// Creates a user without a password: it signs in after a password reset (or through a provider).
pub async fn create_without_password(
    state: &AppState,
    caller: &Caller,
    profile: Profile,
) -> AppResult<UserRow> {
    create(state, caller, &profile, None, Action::CreateUser).await
}

/// A sign-up with a password (public or server) is greeted with the `welcome` mail and its
/// verification link, in the same transaction.
async fn create(
    state: &AppState,
    caller: &Caller,
    p: &Profile,
    hash: Option<&str>,
    action: Action,
) -> AppResult<UserRow> {
    let mut tx = state.db.begin().await?;
    let user = create_in(&mut tx, caller, p, hash, action, false).await?;
    if hash.is_some() {
        mail::send_verification(&mut tx, state, &user, mail::Kind::Welcome).await?;
    }
    tx.commit().await?;
    let source = match caller.actor {
        Actor::Anonymous => Some("public"),
        Actor::Server(_) => Some("server"),
        _ => None,
    };
    if let Some(source) = source {
        state.metrics.sign_up(source);
    }
    Ok(user)
}

/// Inserts the user and audits it, inside the caller's transaction. `email_verified` when a
/// provider vouched for the address.
pub async fn create_in(
    conn: &mut sqlx::PgConnection,
    caller: &Caller,
    p: &Profile,
    hash: Option<&str>,
    action: Action,
    email_verified: bool,
) -> AppResult<UserRow> {
    let user = repo::users::insert(
        &mut *conn,
        &repo::users::NewUser {
            email: p.email.as_str(),
            phone: p.phone.as_ref().map(Phone::as_str),
            password_hash: hash,
            first_name: p.first_name.trim(),
            last_name: clean_name(p.last_name.as_deref()),
            middle_name: clean_name(p.middle_name.as_deref()),
            role: p.role,
            email_verified,
        },
    )
    .await?;
    // someone signing themselves up is the new user from here on
    let caller = match caller.actor {
        Actor::Anonymous => caller.as_user(user.id),
        _ => caller.clone(),
    };
    audit::record(
        &mut *conn,
        &caller,
        action,
        Some(user.id),
        json!({"role": user.role}),
    )
    .await?;
    tracing::info!(user_id = %user.id, role = %user.role, "user created");
    Ok(user)
}

pub async fn get(state: &AppState, id: Uuid) -> AppResult<UserRow> {
    repo::users::find_by_id(&state.db, id)
        .await?
        .ok_or_else(AppError::user_not_found)
}

/// Name changes; for the optional names `Some(None)` clears and `None` keeps. Trimmed when stored
/// (a blank optional name clears it).
pub struct NameChange {
    pub first_name: Option<String>,
    pub last_name: Option<Option<String>>,
    pub middle_name: Option<Option<String>>,
}

pub async fn update_profile(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    change: NameChange,
) -> AppResult<UserRow> {
    let mut tx = state.db.begin().await?;
    live_user(&mut tx, id).await?;
    let user = repo::users::update_names(
        &mut *tx,
        id,
        &repo::users::NameChange {
            first_name: change.first_name.as_deref().map(str::trim),
            last_name: change.last_name.as_ref().map(|n| clean_name(n.as_deref())),
            middle_name: change
                .middle_name
                .as_ref()
                .map(|n| clean_name(n.as_deref())),
        },
    )
    .await?;
    let fields: Vec<&str> = [
        change.first_name.as_ref().map(|_| "first_name"),
        change.last_name.as_ref().map(|_| "last_name"),
        change.middle_name.as_ref().map(|_| "middle_name"),
    ]
    .into_iter()
    .flatten()
    .collect();
    audit::record(
        &mut tx,
        caller,
        Action::ProfileUpdate,
        Some(id),
        json!({"fields": fields}),
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// Contact changes; `phone: Some(None)` removes the phone.
pub struct ContactChange {
    pub email: Option<Email>,
    pub phone: Option<Option<Phone>>,
}

/// Changes email and/or phone. A user changing their own contacts proves it with `current_password`;
/// a server does not. Taken email or phone → 409.
pub async fn change_contacts(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    change: ContactChange,
    current_password: Option<&SecretString>,
) -> AppResult<UserRow> {
    if let Some(password) = current_password {
        let user = get(state, id).await?;
        super::auth::confirm_password(state, caller, &user, password).await?;
    }
    let mut tx = state.db.begin().await?;
    let before = live_user(&mut tx, id).await?;
    let phone = change.phone.as_ref().map(|p| p.as_ref().map(Phone::as_str));
    let user = repo::users::update_contacts(
        &mut *tx,
        id,
        change.email.as_ref().map(Email::as_str),
        phone,
    )
    .await?;
    let fields: Vec<&str> = [
        change.email.as_ref().map(|_| "email"),
        change.phone.as_ref().map(|_| "phone"),
    ]
    .into_iter()
    .flatten()
    .collect();
    audit::record(
        &mut tx,
        caller,
        Action::ContactsUpdate,
        Some(id),
        json!({"fields": fields}),
    )
    .await?;
    if !before.email.eq_ignore_ascii_case(&user.email) {
        // the new address is to be proven, the old one is told, and reset links sent to it die
        repo::reset_tokens::kill_unused(&mut *tx, id).await?;
        mail::send_verification(&mut tx, state, &user, mail::Kind::EmailVerification).await?;
        let ctx = mail::Context {
            new_email: Some(user.email.clone()),
            ..mail::Context::default()
        };
        mail::notice(&mut tx, state, mail::Kind::EmailChanged, &before, ctx).await?;
    }
    tx.commit().await?;
    Ok(user)
}

/// Proves an address with the token mailed to it: single use, unexpired, and for the address the
/// account still has (400 `invalid_verification_token` otherwise).
pub async fn verify_email(state: &AppState, caller: &Caller, token: &str) -> AppResult<UserRow> {
    let mut tx = state.db.begin().await?;
    let (user_id, email) = repo::verification_tokens::take(&mut *tx, &token_hash(token))
        .await?
        .ok_or(AppError::InvalidVerificationToken)?;
    let user = repo::users::verify_email(&mut *tx, user_id, &email)
        .await?
        .ok_or(AppError::InvalidVerificationToken)?;
    let caller = match caller.actor {
        Actor::Anonymous => caller.as_user(user_id),
        _ => caller.clone(),
    };
    audit::record(
        &mut tx,
        &caller,
        Action::EmailVerify,
        Some(user_id),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// Sends the caller a new verification link (400 `already_verified` when there is nothing to
/// prove); at most one per `email.min_interval_secs`, later requests answer alike and send nothing.
pub async fn request_verification(
    state: &AppState,
    caller: &Caller,
    user_id: Uuid,
) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let user = live_user(&mut tx, user_id).await?;
    if user.email_verified {
        return Err(AppError::AlreadyVerified);
    }
    let interval = state.settings.email.min_interval_secs;
    if mail::sent_recently(&mut tx, user_id, mail::Kind::EmailVerification, interval).await? {
        return Ok(());
    }
    mail::send_verification(&mut tx, state, &user, mail::Kind::EmailVerification).await?;
    audit::record(
        &mut tx,
        caller,
        Action::EmailVerificationSent,
        Some(user_id),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Locks an existing, active user: 404 when unknown, 400 `already_deleted` when soft-deleted.
pub async fn live_user(conn: &mut sqlx::PgConnection, id: Uuid) -> AppResult<UserRow> {
    let user = repo::users::lock(conn, id)
        .await?
        .ok_or_else(AppError::user_not_found)?;
    if user.is_deleted() {
        return Err(AppError::AlreadyDeleted);
    }
    Ok(user)
}

/// What an admin search asks for, in domain terms.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// a case-insensitive substring of email, phone or names
    pub query: Option<String>,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
    /// the last id of the previous page
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// An admin search: a page of users with their links, newest first, and the id to continue before.
pub async fn search(state: &AppState, f: &UserFilter) -> AppResult<(Vec<UserView>, Option<Uuid>)> {
    let query = f
        .query
        .as_deref()
        .map(|q| q.trim().to_lowercase())
        .filter(|q| !q.is_empty());
    state.search_terms.refresh_if_stale(&state.db);
    let rows = repo::users::search(
        &state.db,
        &repo::users::Search {
            query: query.as_deref(),
            index_pattern: query
                .as_deref()
                .map(|q| state.search_terms.index_pattern(q)),
            role: f.role,
            status: f.status,
            before: f.before,
            limit: f.limit + 1,
        },
    )
    .await?;
    let (rows, next) = super::split_page(rows, f.limit, |r| r.user.id);
    let views = rows
        .into_iter()
        .map(|r| UserView::new(r.user, r.links))
        .collect();
    Ok((views, next))
}
