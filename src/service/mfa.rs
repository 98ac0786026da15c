//! Two-factor sign-in with TOTP: enrolment and its confirmation, recovery codes, turning it off (by
//! the user or an admin), and the second step of a sign-in (`login/mfa`).
//!
//! A first step (`auth::sign_in`) of an account with two-factor on opens no session: it leaves a
//! challenge — a single-use token, stored as a hash, alive `CHALLENGE_TTL_SECS`, dead after
//! `MAX_CODE_FAILURES` wrong codes — that `complete` turns into what the first step would have
//! answered. Every check of a code counts into the account's lockout like a password attempt; a
//! TOTP code is accepted once (the last accepted step is kept per factor), a recovery code once.

use chrono::{Duration, Utc};
use serde_json::json;
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::audit::{self, Action, Caller};
use super::mail::{self, Kind};
use super::{auth, users, ClientMeta, Issued, Principal};
use crate::auth::jwt::token_hash;
use crate::auth::{random_token, totp};
use crate::error::{AppError, AppResult, FieldError};
use crate::repo::{self, mfa::FactorRow, users::UserRow};
use crate::service::rate_limit::Budget;
use crate::state::AppState;

/// How long a first step waits for its second.
pub const CHALLENGE_TTL_SECS: i64 = 300;
/// Wrong codes a challenge survives.
pub const MAX_CODE_FAILURES: i32 = 5;

/// The first step a challenge came from: what its completion answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `{user, session_id}` and cookies
    Login,
    /// the token body
    Token,
    /// the restored user
    Restore,
    /// as `Login`
    Telegram,
    /// as `Login` (the callback redirected with the token)
    Yandex,
}

impl Form {
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Login => "login",
            Form::Token => "token",
            Form::Restore => "restore",
            Form::Telegram => "telegram",
            Form::Yandex => "yandex",
        }
    }

    /// The `method` of `users_sign_ins_total` a completion counts under: its first step's.
    fn metric_method(self) -> Option<&'static str> {
        match self {
            Form::Login | Form::Token => Some("password"),
            Form::Telegram => Some("telegram"),
            Form::Yandex => Some("yandex"),
            Form::Restore => None,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Form::Login,
            Form::Token,
            Form::Restore,
            Form::Telegram,
            Form::Yandex,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

/// A first step's answer when a second is needed.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub token: String,
    pub expires_in: i64,
}

/// The second factor a request offers: a TOTP code, or a recovery code in canonical form.
#[derive(Debug, Clone)]
pub enum Proof {
    Code(String),
    Recovery(String),
}

impl Proof {
    /// Exactly one of `code` (six digits) and `recovery_code` (`xxxx-xxxx-xxxx-xxxx`); 422 otherwise.
    pub fn parse(code: Option<&str>, recovery_code: Option<&str>) -> AppResult<Self> {
        match (code, recovery_code) {
            (Some(code), None) => Self::code(code).map(Proof::Code),
            (None, Some(code)) => totp::normalize_recovery_code(code)
                .map(Proof::Recovery)
                .ok_or_else(|| {
                    invalid(
                        "recovery_code",
                        "must be a recovery code: xxxx-xxxx-xxxx-xxxx",
                    )
                }),
            (Some(_), Some(_)) => Err(invalid(
                "code",
                "give either code or recovery_code, not both",
            )),
            (None, None) => Err(invalid("code", "give code or recovery_code")),
        }
    }

    /// A TOTP code alone (the routes that take no recovery code); 422 when not six digits.
    pub fn code(code: &str) -> AppResult<String> {
        if totp::is_code(code) {
            Ok(code.to_owned())
        } else {
            Err(invalid(
                "code",
                "must be the 6 digits the authenticator shows",
            ))
        }
    }

    /// The `amr` method it adds to a sign-in.
    fn method(&self) -> &'static str {
        match self {
            Proof::Code(_) => "otp",
            Proof::Recovery(_) => "recovery",
        }
    }
}

fn invalid(field: &str, message: &str) -> AppError {
    AppError::Validation(vec![FieldError::new(field, message)])
}

/// An enrolment's secret, for the authenticator app.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
}

/// Where a secret is stored: its associated data when sealed.
pub(super) fn secret_place(user_id: Uuid) -> String {
    format!("totp_factors.secret:{user_id}")
}

/// Starts an enrolment (replacing an unconfirmed one): a new secret, stored sealed.
pub async fn enrol(state: &AppState, caller: &Caller, p: &Principal) -> AppResult<Enrolment> {
    p.require_recent_sign_in(state.settings.auth.reauth_window_secs)?;
    let secret = totp::new_secret();
    let sealed = state
        .data_key
        .seal(&secret, &secret_place(p.user_id))
        .map_err(AppError::Internal)?;
    let mut tx = state.db.begin().await?;
    let user = users::live_user(&mut tx, p.user_id).await?;
    if user.mfa_enabled
        || !repo::mfa::put_pending(&mut *tx, user.id, &sealed.bytes, sealed.key_id.as_deref())
            .await?
    {
        return Err(AppError::MfaAlreadyEnabled);
    }
    // built before the commit: nothing may fail once the enrolment is stored
    let otpauth_uri = totp::otpauth_uri(&secret, &state.settings.auth.issuer, &user.email)
        .map_err(AppError::Internal)?;
    audit::record(&mut tx, caller, Action::MfaEnrol, Some(user.id), json!({})).await?;
    tx.commit().await?;
    Ok(Enrolment {
        secret: totp::base32(&secret),
        otpauth_uri,
    })
}

/// Confirms the enrolment with a code from the app: two-factor sign-in is on, and ten recovery
/// codes are made (returned once, stored hashed).
pub async fn confirm(
    state: &AppState,
    caller: &Caller,
    p: &Principal,
    code: &str,
) -> AppResult<Vec<String>> {
    let proof = Proof::Code(code.to_owned());
    let mut tx = state.db.begin().await?;
    let user = users::live_user(&mut tx, p.user_id).await?;
    // confirmed already: no enrolment is waiting for a code
    let factor = repo::mfa::factor(&mut *tx, user.id)
        .await?
        .filter(|f| f.confirmed_at.is_none())
        .ok_or(AppError::MfaNotEnrolled)?;
    let (mut tx, _) = prove(state, tx, &user, &factor, &proof).await?;
    repo::mfa::confirm(&mut tx, user.id).await?;
    let codes = new_recovery_codes(&mut tx, user.id).await?;
    audit::record(&mut tx, caller, Action::MfaEnable, Some(user.id), json!({})).await?;
    mail::notice(
        &mut tx,
        state,
        Kind::MfaEnabled,
        &user,
        mail::Context::default(),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "two-factor sign-in turned on");
    Ok(codes)
}

/// Ten new recovery codes for a code from the app; the old ones are dead.
pub async fn regenerate_codes(
    state: &AppState,
    caller: &Caller,
    p: &Principal,
    code: &str,
) -> AppResult<Vec<String>> {
    let proof = Proof::Code(code.to_owned());
    let mut tx = state.db.begin().await?;
    let user = users::live_user(&mut tx, p.user_id).await?;
    let factor = enabled_factor(&mut tx, &user).await?;
    let (mut tx, _) = prove(state, tx, &user, &factor, &proof).await?;
    let codes = new_recovery_codes(&mut tx, user.id).await?;
    let action = Action::MfaRecoveryCodesRegenerate;
    audit::record(&mut tx, caller, action, Some(user.id), json!({})).await?;
    tx.commit().await?;
    Ok(codes)
}

/// The user turns two-factor sign-in off with a code or a recovery code; every other session of
/// theirs is revoked.
pub async fn disable(
    state: &AppState,
    caller: &Caller,
    p: &Principal,
    proof: Proof,
) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let user = users::live_user(&mut tx, p.user_id).await?;
    let factor = enabled_factor(&mut tx, &user).await?;
    let (mut tx, left) = prove(state, tx, &user, &factor, &proof).await?;
    if let Some(left) = left {
        recovery_code_used(&mut tx, state, caller, &user, left).await?;
    }
    turn_off(&mut tx, state, caller, &user, Some(p.session_id), "user").await?;
    tx.commit().await?;
    Ok(())
}

/// An admin turns a user's two-factor sign-in off (a lost device): every session of the user is
/// revoked (but the admin's own, when they reset themselves).
pub async fn admin_reset(
    state: &AppState,
    caller: &Caller,
    admin: &Principal,
    user_id: Uuid,
) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let user = repo::users::lock(&mut tx, user_id)
        .await?
        .ok_or_else(AppError::user_not_found)?;
    if !user.mfa_enabled {
        return Err(AppError::MfaNotEnabled);
    }
    let keep = (admin.user_id == user_id).then_some(admin.session_id);
    turn_off(&mut tx, state, caller, &user, keep, "admin").await?;
    tx.commit().await?;
    Ok(())
}

async fn turn_off(
    conn: &mut PgConnection,
    state: &AppState,
    caller: &Caller,
    user: &UserRow,
    keep: Option<Uuid>,
    by: &str,
) -> AppResult<()> {
    repo::mfa::remove(&mut *conn, user.id).await?;
    let revoked = repo::sessions::revoke_all(&mut *conn, user.id, keep).await?;
    let details = json!({"by": by, "sessions_revoked": revoked});
    audit::record(conn, caller, Action::MfaDisable, Some(user.id), details).await?;
    mail::notice(
        conn,
        state,
        Kind::MfaDisabled,
        user,
        mail::Context::default(),
    )
    .await?;
    tracing::info!(user_id = %user.id, by, "two-factor sign-in turned off");
    Ok(())
}

async fn recovery_code_used(
    conn: &mut PgConnection,
    state: &AppState,
    caller: &Caller,
    user: &UserRow,
    left: i64,
) -> AppResult<()> {
    let details = json!({"remaining": left});
    audit::record(
        conn,
        caller,
        Action::RecoveryCodeUse,
        Some(user.id),
        details,
    )
    .await?;
    let ctx = mail::Context {
        remaining: Some(left),
        ..Default::default()
    };
    mail::notice(conn, state, Kind::RecoveryCodeUsed, user, ctx).await
}

/// The first step of a sign-in proved the first factor of an account with two-factor on: a
/// challenge for the second.
pub async fn challenge(
    state: &AppState,
    user: &UserRow,
    form: Form,
    methods: &[&str],
) -> AppResult<Challenge> {
    let token = random_token();
    let expires_at = Utc::now() + Duration::seconds(CHALLENGE_TTL_SECS);
    repo::mfa::insert_challenge(
        &state.db,
        &token_hash(&token),
        user.id,
        form.as_str(),
        methods,
        expires_at,
    )
    .await?;
    Ok(Challenge {
        token,
        expires_in: CHALLENGE_TTL_SECS,
    })
}

/// A completed sign-in: what the first step would have answered.
#[derive(Debug)]
pub enum Completed {
    SignedIn {
        user: Box<UserRow>,
        issued: Issued,
        form: Form,
    },
    Restored(Box<UserRow>),
}

/// The second step: the challenge (live, unused, fewer than five wrong codes) and the code, within
/// the login's per-IP budget and the account's lockout. A wrong code is 401 `invalid_mfa_code`;
/// an unknown, used, expired or exhausted challenge 401 `unauthenticated`.
pub async fn complete(
    state: &AppState,
    meta: &ClientMeta,
    token: &str,
    proof: Proof,
) -> AppResult<Completed> {
    state.limits.check(Budget::Login, meta.ip).await?;
    let mut form = None;
    let outcome = complete_in(state, meta, token, proof, &mut form).await;
    let method = form.and_then(Form::metric_method);
    if let (Some(method), Some(result)) = (method, auth::sign_in_result(&outcome)) {
        state.metrics.sign_in(method, result);
    }
    outcome
}

/// As [`complete`]; sets `form` once the challenge is known (the sign-in metric's method).
async fn complete_in(
    state: &AppState,
    meta: &ClientMeta,
    token: &str,
    proof: Proof,
    form_seen: &mut Option<Form>,
) -> AppResult<Completed> {
    let hash = token_hash(token);
    let mut tx = state.db.begin().await?;
    let challenge = repo::mfa::challenge_for_update(&mut tx, &hash)
        .await?
        .filter(|c| {
            c.used_at.is_none() && c.expires_at > Utc::now() && c.failures < MAX_CODE_FAILURES
        })
        .ok_or(AppError::Unauthenticated)?;
    let form = Form::parse(&challenge.form).ok_or(AppError::Unauthenticated)?;
    *form_seen = Some(form);
    let user = repo::users::find_by_id(&mut *tx, challenge.user_id)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    // two-factor turned off (or reset) since the first step: the challenge died with it
    let factor = repo::mfa::factor(&mut *tx, user.id)
        .await?
        .filter(|f| f.confirmed_at.is_some())
        .ok_or(AppError::Unauthenticated)?;
    let caller = Caller::anonymous(meta.ip);
    let checked = check(state, &mut tx, &user, &factor, &proof).await?;
    let left = match checked {
        Checked::Right(left) => left,
        Checked::Wrong => {
            repo::mfa::fail_challenge(&mut *tx, &hash).await?;
            let details =
                json!({"email": user.email.to_lowercase(), "second_factor": proof.method()});
            audit::record(
                &mut tx,
                &caller,
                Action::LoginFailed,
                Some(user.id),
                details,
            )
            .await?;
            tx.commit().await?;
            return Err(AppError::MfaCodeRejected);
        }
        Checked::Locked(e) => {
            tx.commit().await?;
            return Err(e);
        }
    };
    repo::mfa::use_challenge(&mut *tx, &hash).await?;
    let caller = caller.as_user(user.id);
    if let Some(left) = left {
        recovery_code_used(&mut tx, state, &caller, &user, left).await?;
    }
    if form == Form::Restore {
        let restored = super::lifecycle::restore_in(&mut tx, &caller, &user).await?;
        repo::login_throttle::clear(&mut *tx, &user.email.to_lowercase()).await?;
        tx.commit().await?;
        return Ok(Completed::Restored(Box::new(restored)));
    }
    if user.is_deleted() {
        tx.commit().await?;
        return Err(AppError::AccountDeleted);
    }
    let mut methods: Vec<&str> = challenge.methods.iter().map(String::as_str).collect();
    methods.push(proof.method());
    let issued = auth::open_session(&mut tx, state, &user, meta, &methods, None).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, session_id = %issued.principal.session_id, "sign-in completed with a second factor");
    Ok(Completed::SignedIn {
        user: Box::new(user),
        issued,
        form,
    })
}

enum Checked {
    /// right; with the recovery codes left when one was used
    Right(Option<i64>),
    Wrong,
    Locked(AppError),
}

/// One code attempt against the account's lockout, in the caller's transaction (which holds the
/// counter's row until it ends): reserved before the check, ended by a right code.
async fn check(
    state: &AppState,
    tx: &mut Transaction<'static, Postgres>,
    user: &UserRow,
    factor: &FactorRow,
    proof: &Proof,
) -> AppResult<Checked> {
    let key = user.email.to_lowercase();
    if let Some(locked) = auth::reserve_attempt(&mut **tx, state, &key).await? {
        return Ok(Checked::Locked(locked));
    }
    let right =
        match proof {
            Proof::Code(code) => {
                let secret = state
                .data_key
                .open(&factor.secret, factor.key_id.as_deref(), &secret_place(user.id))
                .map_err(|e| {
                    tracing::error!(user_id = %user.id, error = %e, "a TOTP secret does not open");
                    AppError::Unavailable
                })?;
                let now = Utc::now().timestamp().max(0) as u64;
                match totp::matching_step(&secret, code, now).map_err(AppError::Internal)? {
                    Some(step) => repo::mfa::accept_step(&mut **tx, user.id, step as i64)
                        .await?
                        .then_some(None),
                    None => None,
                }
            }
            Proof::Recovery(code) => {
                let hash = totp::recovery_code_hash(user.id, code);
                repo::mfa::use_recovery_code(tx, user.id, &hash)
                    .await?
                    .map(Some)
            }
        };
    Ok(match right {
        Some(left) => Checked::Right(left),
        None => Checked::Wrong,
    })
}

/// A private route's check of a code: a wrong one commits its count and answers 400
/// `invalid_mfa_code`; a right one hands its reserved attempt back — it neither counts nor ends
/// the count, which only a completed sign-in does (contract) — and the transaction with it (with
/// the recovery codes left when one was used).
async fn prove(
    state: &AppState,
    mut tx: Transaction<'static, Postgres>,
    user: &UserRow,
    factor: &FactorRow,
    proof: &Proof,
) -> AppResult<(Transaction<'static, Postgres>, Option<i64>)> {
    match check(state, &mut tx, user, factor, proof).await? {
        Checked::Right(left) => {
            repo::login_throttle::release(&mut *tx, &user.email.to_lowercase()).await?;
            Ok((tx, left))
        }
        Checked::Wrong => {
            tx.commit().await?;
            Err(AppError::InvalidMfaCode)
        }
        Checked::Locked(e) => {
            tx.commit().await?;
            Err(e)
        }
    }
}

async fn new_recovery_codes(conn: &mut PgConnection, user_id: Uuid) -> AppResult<Vec<String>> {
    let codes = totp::new_recovery_codes();
    let hashes: Vec<Vec<u8>> = codes
        .iter()
        .filter_map(|c| totp::normalize_recovery_code(c))
        .map(|c| totp::recovery_code_hash(user_id, &c))
        .collect();
    repo::mfa::replace_recovery_codes(conn, user_id, &hashes).await?;
    Ok(codes)
}

async fn enabled_factor(conn: &mut PgConnection, user: &UserRow) -> AppResult<FactorRow> {
    repo::mfa::factor(conn, user.id)
        .await?
        .filter(|f| f.confirmed_at.is_some() && user.mfa_enabled)
        .ok_or(AppError::MfaNotEnabled)
}
