//! Sign-in with Yandex and Telegram. A provider identity is a linked account with `external_id`;
//! an identity signs in its user, an unknown one creates a user, and an email that belongs to
//! another account is never linked automatically.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{Duration, Utc};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::audit::Caller;
use super::auth::SignIn;
use super::mfa::{Challenge, Form};
use super::rate_limit::Budget;
use super::users::{live_user, Profile};
use super::views::UserView;
use super::{auth, linked_accounts, ClientMeta, Issued, Principal};
use crate::auth::jwt::token_hash;
use crate::auth::random_token;
use crate::domain::{Email, SocialNetwork};
use crate::error::{AppError, AppResult, FieldError};
use crate::providers::telegram;
use crate::repo::{self, users::UserRow};
use crate::state::AppState;

/// Who a provider says the person is.
pub struct Identity {
    pub network: SocialNetwork,
    pub external_id: String,
    pub link: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// What a provider sign-in ended in.
pub enum Outcome {
    SignedIn(Box<UserRow>, Issued),
    /// the identity's user has two-factor sign-in on: the second step completes it
    SecondFactor(Challenge),
    /// the identity was linked to the signed-in user who started the flow
    Linked(Box<UserRow>),
    /// the provider's email belongs to another account: not linked automatically
    AccountExists,
    /// the person declined at the provider (its `error` parameter)
    Declined(String),
}

/// A started Yandex sign-in: where to send the browser, and the nonce that binds it to this browser.
pub struct Started {
    pub location: String,
    pub browser_nonce: String,
}

/// Starts a Yandex sign-in, or — for a signed-in caller — a link of the Yandex identity to their
/// account, which needs a recent sign-in (403 `reauthentication_required`).
pub async fn start_yandex(
    state: &AppState,
    redirect_to: &str,
    current: Option<&Principal>,
) -> AppResult<Started> {
    if !state.yandex.is_configured() {
        return Err(not_configured());
    }
    let allowed = &state.settings.oauth.allowed_redirects;
    if !allowed.iter().any(|r| r == redirect_to) {
        return Err(AppError::Validation(vec![FieldError::new(
            "redirect_to",
            "not an allowed redirect",
        )]));
    }
    if let Some(p) = current {
        p.require_recent_sign_in(state.settings.auth.reauth_window_secs)?;
    }
    let link_user = current.map(|p| p.user_id);
    let state_param = random_token();
    let verifier = random_token();
    let browser_nonce = random_token();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    repo::oauth_states::insert(
        &state.db,
        &repo::oauth_states::NewState {
            state_hash: &token_hash(&state_param),
            provider: SocialNetwork::Yandex.as_str(),
            code_verifier: &verifier,
            redirect_to,
            browser_hash: &token_hash(&browser_nonce),
            link_user_id: link_user,
            expires_at: Utc::now() + Duration::seconds(state.settings.oauth.state_ttl_secs),
        },
    )
    .await?;
    Ok(Started {
        location: state.yandex.authorize_url(&state_param, &challenge)?,
        browser_nonce,
    })
}

/// The callback: the state is used up (once, unexpired, same browser), the code exchanged, the
/// profile read. Returns where to send the browser back and how it ended: errors before that point
/// (bad state, provider failure) are the request's; errors after it are told to the app.
pub async fn finish_yandex(
    state: &AppState,
    meta: &ClientMeta,
    state_param: &str,
    browser_nonce: Option<&str>,
    code: Result<&str, &str>,
) -> AppResult<(String, AppResult<Outcome>)> {
    if !state.yandex.is_configured() {
        return Err(not_configured());
    }
    let started = repo::oauth_states::take(&state.db, &token_hash(state_param))
        .await?
        .ok_or(AppError::InvalidState)?;
    let same_browser =
        browser_nonce.is_some_and(|n| bool::from(token_hash(n).ct_eq(&started.browser_hash)));
    if !same_browser || started.provider != SocialNetwork::Yandex.as_str() {
        return Err(AppError::InvalidState);
    }
    let code = match code {
        Ok(code) => code,
        // the person declined at Yandex: back to the app with the provider's reason
        Err(reason) => {
            return Ok((
                started.redirect_to,
                Ok(Outcome::Declined(reason.to_owned())),
            ))
        }
    };
    let token = state.yandex.exchange(code, &started.code_verifier).await?;
    let profile = state.yandex.profile(&token).await?;
    let identity = Identity {
        network: SocialNetwork::Yandex,
        link: format!(
            "https://yandex.ru/?login={}",
            profile.login.as_deref().unwrap_or(&profile.id)
        ),
        external_id: profile.id,
        email: profile.default_email,
        first_name: profile.first_name,
        last_name: profile.last_name,
    };
    let outcome = complete(state, meta, identity, started.link_user_id).await;
    record_sign_in(state, "yandex", &outcome);
    Ok((started.redirect_to, outcome))
}

/// The Login Widget's fields, as posted.
pub struct TelegramLogin {
    pub fields: BTreeMap<String, String>,
    pub hash: String,
}

/// What the Telegram route answers: a sign-in or a link, or (two-factor on) a challenge.
pub enum TelegramAnswer {
    Done(Box<TelegramSignIn>),
    SecondFactor(Challenge),
}

/// A Telegram sign-in (or link, for a signed-in caller), as the route answers it.
pub struct TelegramSignIn {
    pub user: UserView,
    /// the new session, or the caller's own when the identity was linked
    pub session_id: Uuid,
    /// tokens of the new session (none when linking)
    pub issued: Option<Issued>,
}

/// The Login Widget route: checks the per-IP budget and the widget's hash, then links the
/// identity to the signed-in caller or signs its user in (creating one for an unknown identity).
pub async fn telegram(
    state: &AppState,
    meta: &ClientMeta,
    login: TelegramLogin,
    current: Option<&Principal>,
) -> AppResult<TelegramAnswer> {
    state.limits.check(Budget::Login, meta.ip).await?;
    if let Some(p) = current {
        p.require_recent_sign_in(state.settings.auth.reauth_window_secs)?;
    }
    let outcome = telegram_outcome(state, meta, login, current.map(|p| p.user_id)).await?;
    let (user, session_id, issued) = match outcome {
        Outcome::SignedIn(user, issued) => (*user, issued.principal.session_id, Some(issued)),
        Outcome::SecondFactor(challenge) => return Ok(TelegramAnswer::SecondFactor(challenge)),
        Outcome::Linked(user) => (
            *user,
            current.map(|p| p.session_id).unwrap_or_default(),
            None,
        ),
        Outcome::AccountExists | Outcome::Declined(_) => {
            return Err(AppError::Conflict(
                "account_exists",
                "the email belongs to another account",
            ))
        }
    };
    Ok(TelegramAnswer::Done(Box::new(TelegramSignIn {
        user: linked_accounts::view(state, user).await?,
        session_id,
        issued,
    })))
}

async fn telegram_outcome(
    state: &AppState,
    meta: &ClientMeta,
    login: TelegramLogin,
    link_user: Option<Uuid>,
) -> AppResult<Outcome> {
    let bot_token = state.settings.oauth.telegram.bot_token.expose_secret();
    if bot_token.is_empty() {
        return Err(not_configured());
    }
    let max_age = state.settings.oauth.telegram.max_age_secs;
    if !telegram::verify(
        &login.fields,
        &login.hash,
        bot_token,
        max_age,
        Utc::now().timestamp(),
    ) {
        return Err(AppError::InvalidCredentials);
    }
    // a payload signs in once: a replay within its lifetime is refused like a bad hash
    let auth_date = login
        .fields
        .get("auth_date")
        .and_then(|d| d.parse::<i64>().ok())
        .unwrap_or_default();
    let stale_at = chrono::DateTime::from_timestamp(auth_date.saturating_add(max_age), 0)
        .unwrap_or_else(Utc::now);
    if !repo::telegram_logins::remember(&state.db, &token_hash(&login.hash), stale_at).await? {
        return Err(AppError::InvalidCredentials);
    }
    let field = |k: &str| login.fields.get(k).cloned();
    let identity = Identity {
        network: SocialNetwork::Telegram,
        external_id: field("id").unwrap_or_default(),
        link: format!("https://t.me/{}", field("username").unwrap_or_default()),
        email: None,
        first_name: field("first_name"),
        last_name: field("last_name"),
    };
    let outcome = complete(state, meta, identity, link_user).await;
    record_sign_in(state, "telegram", &outcome);
    outcome
}

/// A provider sign-in's outcome in `users_sign_ins_total` (links are not sign-ins).
fn record_sign_in(state: &AppState, method: &'static str, outcome: &AppResult<Outcome>) {
    if matches!(
        outcome,
        Ok(Outcome::Linked(_)
            | Outcome::Declined(_)
            | Outcome::AccountExists
            | Outcome::SecondFactor(_))
    ) {
        return;
    }
    if let Some(result) = auth::sign_in_result(outcome) {
        state.metrics.sign_in(method, result);
    }
}

/// Links the identity to the user who started the flow, or signs in its user, or creates one.
async fn complete(
    state: &AppState,
    meta: &ClientMeta,
    id: Identity,
    link_user: Option<Uuid>,
) -> AppResult<Outcome> {
    let network = id.network;
    if let Some(user_id) = link_user {
        let caller = Caller::user(user_id, meta.ip);
        let mut tx = state.db.begin().await?;
        let user = live_user(&mut tx, user_id).await?;
        match repo::linked_accounts::find_identity(&mut *tx, network, &id.external_id).await? {
            Some(existing) if existing.user_id == user_id => {}
            Some(_) => {
                return Err(AppError::Conflict(
                    "link_exists",
                    "this identity belongs to another account",
                ))
            }
            None => {
                linked_accounts::insert(
                    &mut tx,
                    &caller,
                    user_id,
                    id.network,
                    &id.link,
                    None,
                    Some(&id.external_id),
                )
                .await?;
            }
        }
        tx.commit().await?;
        return Ok(Outcome::Linked(Box::new(user)));
    }
    let user =
        match repo::linked_accounts::find_identity(&state.db, network, &id.external_id).await? {
            Some(link) => crate::service::users::get(state, link.user_id).await?,
            // `auth.public_sign_up: false` stops providers from creating users too
            None if !state.settings.auth.public_sign_up => return Err(AppError::SignUpDisabled),
            None => match create_from_identity(state, meta, &id).await? {
                Some(user) => user,
                None => return Ok(Outcome::AccountExists),
            },
        };
    if user.is_deleted() {
        return Err(AppError::AccountDeleted);
    }
    let form = match network {
        SocialNetwork::Telegram => Form::Telegram,
        _ => Form::Yandex,
    };
    match auth::sign_in(state, &user, meta, form, &[network.as_str()]).await? {
        SignIn::Session(issued) => Ok(Outcome::SignedIn(Box::new(user), issued)),
        SignIn::SecondFactor(challenge) => Ok(Outcome::SecondFactor(challenge)),
    }
}

/// A new user for an unknown identity; `None` when the provider's email is another account's.
async fn create_from_identity(
    state: &AppState,
    meta: &ClientMeta,
    id: &Identity,
) -> AppResult<Option<UserRow>> {
    let provider_email = matches!(id.email.clone().map(Email::try_from), Some(Ok(_)));
    let email = match id.email.clone().map(Email::try_from) {
        Some(Ok(email)) => {
            if repo::users::find_by_email(&state.db, email.as_str())
                .await?
                .is_some()
            {
                return Ok(None);
            }
            email
        }
        // no usable email from the provider: a reserved placeholder the user can change later
        _ => Email::try_from(format!("{}-{}@users.invalid", id.network, id.external_id))
            .map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?,
    };
    let profile = Profile {
        email,
        first_name: id
            .first_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "User".into()),
        last_name: id.last_name.clone().filter(|n| !n.trim().is_empty()),
        middle_name: None,
        phone: None,
        role: state.settings.auth.default_role,
    };
    let caller = Caller::anonymous(meta.ip);
    let mut tx = state.db.begin().await?;
    let user = crate::service::users::create_in(
        &mut tx,
        &caller,
        &profile,
        None,
        super::audit::Action::CreateUser,
        // the provider vouches for the address it gave; a placeholder proves nothing
        provider_email,
    )
    .await?;
    let caller = caller.as_user(user.id);
    linked_accounts::insert(
        &mut tx,
        &caller,
        user.id,
        id.network,
        &id.link,
        None,
        Some(&id.external_id),
    )
    .await?;
    tx.commit().await?;
    state.metrics.sign_up(id.network.as_str());
    Ok(Some(user))
}

fn not_configured() -> AppError {
    AppError::NotFound(
        "provider_not_configured",
        "this sign-in provider is not configured",
    )
}
