//! Sign-in, token refresh with rotation and reuse detection, and access-token authentication.

use std::net::IpAddr;

use chrono::{Duration, Utc};
use secrecy::SecretString;
use serde_json::json;
use sqlx::{PgConnection, PgExecutor};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::audit::{self, Action, Caller};
use super::mfa::{self, Challenge, Form};
use super::rate_limit::Budget;
use super::{ClientMeta, Issued, Principal};
use crate::auth::jwt::{token_hash, TokenError, TokenKind};
use crate::auth::password::{HashSlot, Verdict};
use crate::domain::Email;
use crate::error::{AppError, AppResult};
use crate::repo::{self, sessions::SessionRow, users::UserRow};
use crate::service::views::UserView;
use crate::state::AppState;

/// Checks the password (one hash whether or not the email exists), the lockout and the account's
/// state, then opens a session (or, with two-factor on, a challenge). `form` is the route asked:
/// `Login` or `Token`, each with its own per-IP budget.
pub async fn login(
    state: &AppState,
    form: Form,
    email: &Email,
    password: &SecretString,
    meta: &ClientMeta,
) -> AppResult<(UserRow, SignIn)> {
    let budget = match form {
        Form::Token => Budget::Token,
        _ => Budget::Login,
    };
    state.limits.check(budget, meta.ip).await?;
    let outcome = password_login(state, form, email, password, meta).await;
    // a first step waiting for its second is no verdict yet: the completion counts it
    if !matches!(outcome, Ok((_, SignIn::SecondFactor(_)))) {
        if let Some(result) = sign_in_result(&outcome) {
            state.metrics.sign_in("password", result);
        }
    }
    outcome
}

/// The `result` label of a sign-in; `None` for answers that are no verdict on it (rate limited,
/// busy, an outage).
pub fn sign_in_result<T>(outcome: &AppResult<T>) -> Option<&'static str> {
    match outcome {
        Ok(_) => Some("success"),
        Err(AppError::InvalidCredentials | AppError::MfaCodeRejected) => {
            Some("invalid_credentials")
        }
        Err(AppError::TooManyAttempts { .. }) => Some("locked"),
        Err(AppError::AccountDeleted) => Some("deleted"),
        Err(AppError::EmailNotVerified) => Some("not_verified"),
        Err(_) => None,
    }
}

async fn password_login(
    state: &AppState,
    form: Form,
    email: &Email,
    password: &SecretString,
    meta: &ClientMeta,
) -> AppResult<(UserRow, SignIn)> {
    let user = check_password(state, meta, email, password).await?;
    let refused = if user.is_deleted() {
        Some(AppError::AccountDeleted)
    } else if state.settings.auth.require_verified_email && !user.email_verified {
        Some(AppError::EmailNotVerified)
    } else {
        None
    };
    if let Some(refused) = refused {
        // the password was right: it ends the count even though no session opens
        repo::login_throttle::clear(&state.db, &email.key()).await?;
        return Err(refused);
    }
    let signed_in = sign_in(state, &user, meta, form, &["pwd"]).await?;
    Ok((user, signed_in))
}

/// How a first step ends: a session, or (two-factor on) a challenge for the second step.
#[derive(Debug)]
pub enum SignIn {
    Session(Issued),
    SecondFactor(Challenge),
}

/// The end of a first step that proved the user by `methods` (the session's `amr`): a session, or
/// for an account with two-factor on, a challenge and no session (and the lockout count stays: only
/// a completed sign-in ends it).
pub async fn sign_in(
    state: &AppState,
    user: &UserRow,
    meta: &ClientMeta,
    form: Form,
    methods: &[&str],
) -> AppResult<SignIn> {
    if user.mfa_enabled {
        let challenge = mfa::challenge(state, user, form, methods).await?;
        tracing::info!(user_id = %user.id, "first factor proven; waiting for the second");
        return Ok(SignIn::SecondFactor(challenge));
    }
    let issued = start_session(state, user, meta, methods).await?;
    tracing::info!(user_id = %user.id, session_id = %issued.principal.session_id, "login succeeded");
    Ok(SignIn::Session(issued))
}

/// Proves an email and password: one argon2 verification whether or not the email exists (no
/// timing oracle), counted against the email's lockout. A wrong password is audited; a right one
/// upgrades an old hash. The caller ends the lockout count of a right one (`start_session` does).
pub async fn check_password(
    state: &AppState,
    meta: &ClientMeta,
    email: &Email,
    password: &SecretString,
) -> AppResult<UserRow> {
    // the hashing slot first: an overloaded service turns the attempt away before any query
    let slot = state.passwords.slot().await?;
    let key = email.key();
    let user = repo::users::find_by_email(&state.db, email.as_str()).await?;
    let hash = user.as_ref().and_then(|u| u.password_hash.as_deref());
    let verdict = verify_counted(state, slot, &key, password, hash).await?;
    let (user, needs_rehash) = match (user, verdict) {
        (Some(user), Verdict::Right { needs_rehash }) => (user, needs_rehash),
        (user, _) => {
            let caller = Caller::anonymous(meta.ip);
            return wrong_password(state, &caller, user.map(|u| u.id), &key).await;
        }
    };
    if needs_rehash {
        let rehashed = state.passwords.rehash(password).await?;
        repo::users::set_password_hash(&state.db, user.id, &rehashed).await?;
    }
    Ok(user)
}

/// A signed-in user proving it is them before a sensitive change (contacts, password): within the
/// caller's per-IP budget, and counted against the account's login lockout like a login; 401
/// `invalid_credentials` on a wrong password.
pub async fn confirm_password(
    state: &AppState,
    caller: &Caller,
    user: &UserRow,
    password: &SecretString,
) -> AppResult<()> {
    if let Some(ip) = caller.ip {
        state.limits.check(Budget::ConfirmPassword, ip).await?;
    }
    let slot = state.passwords.slot().await?;
    let key = user.email.to_lowercase();
    let hash = user.password_hash.as_deref();
    match verify_counted(state, slot, &key, password, hash).await? {
        Verdict::Right { .. } => Ok(repo::login_throttle::clear(&state.db, &key).await?),
        Verdict::Wrong => wrong_password(state, caller, Some(user.id), &key).await,
    }
}

/// One password attempt against the lockout of `key`, in a hashing slot already held. The attempt
/// is reserved before the hash, in one statement, so N concurrent guesses get at most
/// `auth.max_failed_logins` verdicts and 429 `too_many_attempts` for the rest; an attempt that got
/// no verdict is handed back. A right password must end the count: the caller clears it, a login
/// in its session's transaction (one commit fewer per login).
async fn verify_counted(
    state: &AppState,
    slot: HashSlot,
    key: &str,
    password: &SecretString,
    hash: Option<&str>,
) -> AppResult<Verdict> {
    if let Some(locked) = reserve_attempt(&state.db, state, key).await? {
        return Err(locked);
    }
    let verdict = match slot.verify(password, hash).await {
        Ok(verdict) => verdict,
        Err(e) => {
            repo::login_throttle::release(&state.db, key).await?;
            return Err(e);
        }
    };
    Ok(verdict)
}

/// Reserves one attempt (a password or a code) against the lockout of `key` before it is checked,
/// in one statement; the 429 `too_many_attempts` to answer when it is over
/// `auth.max_failed_logins`.
pub(super) async fn reserve_attempt(
    db: impl PgExecutor<'_>,
    state: &AppState,
    key: &str,
) -> AppResult<Option<AppError>> {
    let auth = &state.settings.auth;
    let (attempts, window_ends) = repo::login_throttle::reserve(db, key, auth.lockout_secs).await?;
    if attempts <= auth.max_failed_logins {
        return Ok(None);
    }
    let secs = (window_ends - Utc::now()).num_seconds().max(1);
    Ok(Some(AppError::TooManyAttempts {
        retry_after_secs: secs as u64,
    }))
}

/// Audits a wrong password (the attempt stays counted) and answers 401 `invalid_credentials`.
async fn wrong_password<T>(
    state: &AppState,
    caller: &Caller,
    target: Option<Uuid>,
    key: &str,
) -> AppResult<T> {
    let details = json!({"email": key});
    let mut tx = state.db.begin().await?;
    audit::record(&mut tx, caller, Action::LoginFailed, target, details).await?;
    tx.commit().await?;
    tracing::info!("wrong email or password");
    Err(AppError::InvalidCredentials)
}

/// Opens a session for a user already proven to be who they say, by `methods` (its `amr`).
pub async fn start_session(
    state: &AppState,
    user: &UserRow,
    meta: &ClientMeta,
    methods: &[&str],
) -> AppResult<Issued> {
    let mut tx = state.db.begin().await?;
    let issued = open_session(&mut tx, state, user, meta, methods, None).await?;
    tx.commit().await?;
    Ok(issued)
}

/// As [`start_session`], in the caller's transaction; `passkey_id` names the passkey of a passkey
/// sign-in in its audit record.
pub async fn open_session(
    conn: &mut PgConnection,
    state: &AppState,
    user: &UserRow,
    meta: &ClientMeta,
    methods: &[&str],
    passkey_id: Option<Uuid>,
) -> AppResult<Issued> {
    let principal = Principal {
        user_id: user.id,
        session_id: Uuid::now_v7(),
        role: user.role,
        signed_in_at: Utc::now(),
        amr: methods.iter().map(|m| (*m).to_owned()).collect(),
    };
    let (issued, refresh_hash) = issue_pair(state, principal)?;
    let user_agent = meta.user_agent.as_deref().map(|ua| truncate(ua, 512));
    let ip = meta.ip.to_string();
    repo::sessions::insert(
        &mut *conn,
        &repo::sessions::NewSession {
            id: issued.principal.session_id,
            user_id: user.id,
            refresh_hash: &refresh_hash,
            user_agent,
            ip: Some(&ip),
            expires_at: Utc::now() + Duration::seconds(state.settings.auth.refresh_ttl_secs),
            amr: methods,
        },
    )
    .await?;
    let caller = Caller::user(user.id, meta.ip);
    let mut details = json!({"session_id": issued.principal.session_id, "amr": methods});
    if let Some(id) = passkey_id {
        details["passkey_id"] = json!(id);
    }
    audit::record(conn, &caller, Action::Login, Some(user.id), details).await?;
    // a sign-in ends the count of wrong passwords (and codes) for the account
    repo::login_throttle::clear(&mut *conn, &user.email.to_lowercase()).await?;
    Ok(issued)
}

/// What a presented refresh token is to its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    /// the session's current token: rotate
    Current,
    /// the token it replaced, within the grace window: a racing request rotated it already
    Replaced,
    /// anything else: a stolen or replayed token, the session dies
    Reuse,
}

fn classify(session: &SessionRow, presented: &[u8], grace: Duration) -> Presented {
    if bool::from(presented.ct_eq(&session.refresh_hash)) {
        return Presented::Current;
    }
    let is_previous = session
        .previous_refresh_hash
        .as_deref()
        .is_some_and(|prev| bool::from(presented.ct_eq(prev)));
    let in_grace = session
        .rotated_at
        .is_some_and(|at| Utc::now() - at <= grace);
    if is_previous && in_grace {
        Presented::Replaced
    } else {
        Presented::Reuse
    }
}

/// Rotates a refresh token. The role is read afresh from the user, so a role change reaches the
/// tokens at the next refresh. A rotated token presented again within the grace window gets an
/// access token only; later, it is reuse and the whole session dies.
pub async fn refresh(state: &AppState, token: &str, ip: IpAddr) -> AppResult<Issued> {
    let claims = state
        .keys
        .verify(token, TokenKind::Refresh)
        .map_err(|_| AppError::SessionEnded)?;
    let mut tx = state.db.begin().await?;
    let session = repo::sessions::find_for_update(&mut tx, claims.sid)
        .await?
        .filter(|s| s.revoked_at.is_none() && s.expires_at > Utc::now() && s.user_id == claims.sub)
        .ok_or(AppError::SessionEnded)?;
    // the absolute lifetime, whatever the sliding refresh lifetime says
    let max_age = Duration::seconds(state.settings.auth.session_max_age_secs);
    let ends_at = session.created_at + max_age;
    if ends_at <= Utc::now() {
        return Err(AppError::SessionEnded);
    }
    let user = repo::users::find_by_id(&mut *tx, session.user_id)
        .await?
        .filter(|u| !u.is_deleted())
        .ok_or(AppError::SessionEnded)?;
    let principal = Principal {
        user_id: user.id,
        session_id: session.id,
        role: user.role,
        signed_in_at: session.created_at,
        amr: session.amr.clone(),
    };
    let presented = token_hash(token);
    let grace = Duration::seconds(state.settings.auth.refresh_reuse_grace_secs);
    match classify(&session, &presented, grace) {
        Presented::Current => {
            let (issued, new_hash) = issue_pair(state, principal)?;
            let slide = Utc::now() + Duration::seconds(state.settings.auth.refresh_ttl_secs);
            let expires_at = slide.min(ends_at);
            repo::sessions::rotate(&mut *tx, session.id, &new_hash, &presented, expires_at).await?;
            tx.commit().await?;
            Ok(issued)
        }
        Presented::Replaced => {
            tx.rollback().await?;
            let (access_token, _) = issue(state, TokenKind::Access, &principal)?;
            Ok(Issued {
                access_token,
                refresh_token: None,
                expires_in: state.settings.auth.access_ttl_secs,
                principal,
            })
        }
        Presented::Reuse => {
            repo::sessions::revoke(&mut *tx, session.id).await?;
            let details = json!({"session_id": session.id});
            let caller = Caller::anonymous(ip);
            let target = Some(session.user_id);
            audit::record(&mut tx, &caller, Action::RefreshReuse, target, details).await?;
            tx.commit().await?;
            tracing::warn!(session_id = %session.id, user_id = %session.user_id, "refresh token reused; session revoked");
            Err(AppError::SessionEnded)
        }
    }
}

/// Verifies an access token and that its session is still live; returns the session's principal
/// and its user as they are now, with their linked accounts (one query for all of it).
pub async fn authenticate(
    state: &AppState,
    token: &str,
) -> Result<(Principal, UserView), AuthFailure> {
    let claims = state
        .keys
        .verify(token, TokenKind::Access)
        .map_err(AuthFailure::Token)?;
    live_session(state, claims.sub, claims.sid)
        .await
        .map_err(AuthFailure::Rejected)
}

/// Why an access token did not authenticate.
#[derive(Debug)]
pub enum AuthFailure {
    Token(TokenError),
    Rejected(AppError),
}

/// The session's principal, with the user's current role, if the session is live.
async fn live_session(
    state: &AppState,
    user_id: Uuid,
    session_id: Uuid,
) -> AppResult<(Principal, UserView)> {
    let s = state
        .session_reads
        .read(session_id)
        .await
        .map_err(super::read_failed)?
        .ok_or(AppError::SessionEnded)?;
    if !s.live || s.user.id != user_id {
        return Err(AppError::SessionEnded);
    }
    if s.stale_last_seen {
        repo::sessions::touch(&state.db, session_id).await?;
    }
    let principal = Principal {
        user_id,
        session_id,
        role: s.user.role,
        signed_in_at: s.signed_in_at,
        amr: s.amr,
    };
    Ok((principal, UserView::new(s.user, s.links)))
}

fn issue_pair(state: &AppState, principal: Principal) -> AppResult<(Issued, Vec<u8>)> {
    let (access_token, _) = issue(state, TokenKind::Access, &principal)?;
    let (refresh_token, _) = issue(state, TokenKind::Refresh, &principal)?;
    let hash = token_hash(&refresh_token);
    Ok((
        Issued {
            access_token,
            refresh_token: Some(refresh_token),
            expires_in: state.settings.auth.access_ttl_secs,
            principal,
        },
        hash,
    ))
}

fn issue(state: &AppState, kind: TokenKind, p: &Principal) -> AppResult<(String, i64)> {
    let auth = &state.settings.auth;
    let (ttl, role, amr) = match kind {
        TokenKind::Access => (auth.access_ttl_secs, Some(p.role), p.amr.as_slice()),
        TokenKind::Refresh => (auth.refresh_ttl_secs, None, &[][..]),
    };
    let (token, claims) = state
        .keys
        .issue(kind, p.user_id, p.session_id, role, amr, ttl)?;
    Ok((token, claims.exp))
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
