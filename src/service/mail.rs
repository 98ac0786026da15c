//! The outbox side of mail: which messages exist, how they are rendered, and writing one in the
//! transaction of the change that causes it (the courier in `jobs::courier` sends them).

use std::path::Path;

use chrono::{DateTime, Utc};
use minijinja::Environment;
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::views::MessageEntry;
use crate::auth::jwt::token_hash;
use crate::auth::random_token;
use crate::config::EmailSettings;
use crate::error::{AppError, AppResult};
use crate::repo::{self, users::UserRow};
use crate::state::AppState;

/// The kinds of mail and their stable names (the `kind` column, template file names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Welcome,
    EmailVerification,
    EmailChanged,
    PasswordReset,
    PasswordChanged,
    AccountDeleted,
    MfaEnabled,
    MfaDisabled,
    RecoveryCodeUsed,
    PasskeyAdded,
    PasskeyRemoved,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Welcome,
        Kind::EmailVerification,
        Kind::EmailChanged,
        Kind::PasswordReset,
        Kind::PasswordChanged,
        Kind::AccountDeleted,
        Kind::MfaEnabled,
        Kind::MfaDisabled,
        Kind::RecoveryCodeUsed,
        Kind::PasskeyAdded,
        Kind::PasskeyRemoved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Welcome => "welcome",
            Kind::EmailVerification => "email_verification",
            Kind::EmailChanged => "email_changed",
            Kind::PasswordReset => "password_reset",
            Kind::PasswordChanged => "password_changed",
            Kind::AccountDeleted => "account_deleted",
            Kind::MfaEnabled => "mfa_enabled",
            Kind::MfaDisabled => "mfa_disabled",
            Kind::RecoveryCodeUsed => "recovery_code_used",
            Kind::PasskeyAdded => "passkey_added",
            Kind::PasskeyRemoved => "passkey_removed",
        }
    }

    fn builtin(self) -> [&'static str; 3] {
        macro_rules! kind {
            ($name:literal) => {
                [
                    include_str!(concat!("mail_templates/", $name, ".subject.txt")),
                    include_str!(concat!("mail_templates/", $name, ".txt")),
                    include_str!(concat!("mail_templates/", $name, ".html")),
                ]
            };
        }
        match self {
            Kind::Welcome => kind!("welcome"),
            Kind::EmailVerification => kind!("email_verification"),
            Kind::EmailChanged => kind!("email_changed"),
            Kind::PasswordReset => kind!("password_reset"),
            Kind::PasswordChanged => kind!("password_changed"),
            Kind::AccountDeleted => kind!("account_deleted"),
            Kind::MfaEnabled => kind!("mfa_enabled"),
            Kind::MfaDisabled => kind!("mfa_disabled"),
            Kind::RecoveryCodeUsed => kind!("recovery_code_used"),
            Kind::PasskeyAdded => kind!("passkey_added"),
            Kind::PasskeyRemoved => kind!("passkey_removed"),
        }
    }
}

/// What templates may show. Values come from users (names, addresses): the HTML templates escape
/// them (auto-escaping by file name), the text ones need not.
#[derive(Debug, Default, Serialize)]
pub struct Context {
    pub name: String,
    /// the link that acts (verify, reset, restore), when the mail has one
    pub link: Option<String>,
    pub new_email: Option<String>,
    pub purge_date: Option<String>,
    pub hours: Option<i64>,
    pub minutes: Option<i64>,
    /// recovery codes left unused
    pub remaining: Option<i64>,
    /// the passkey added or removed
    pub passkey_name: Option<String>,
}

/// A rendered mail.
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The templates: built in, each replaceable by a file in `email.templates_dir`.
pub struct Templates {
    env: Environment<'static>,
    link_base: String,
}

impl Templates {
    pub fn load(settings: &EmailSettings) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        let dir = (!settings.templates_dir.is_empty()).then(|| Path::new(&settings.templates_dir));
        for kind in Kind::ALL {
            let names = [
                format!("{}.subject.txt", kind.as_str()),
                format!("{}.txt", kind.as_str()),
                format!("{}.html", kind.as_str()),
            ];
            for (name, builtin) in names.into_iter().zip(kind.builtin()) {
                let file = dir.map(|d| d.join(&name)).filter(|f| f.is_file());
                let source = match file {
                    Some(f) => std::fs::read_to_string(&f).map_err(|e| {
                        anyhow::anyhow!("email.templates_dir: {}: {e}", f.display())
                    })?,
                    None => builtin.to_owned(),
                };
                env.add_template_owned(name.clone(), source)
                    .map_err(|e| anyhow::anyhow!("email template {name}: {e}"))?;
            }
        }
        Ok(Self {
            env,
            link_base: settings.link_base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// `{email.link_base_url}/<page>?token=<token>`, or without a token.
    pub fn link(&self, page: &str, token: Option<&str>) -> String {
        match token {
            Some(t) => format!("{}/{page}?token={t}", self.link_base),
            None => format!("{}/{page}", self.link_base),
        }
    }

    pub fn render(&self, kind: Kind, ctx: &Context) -> AppResult<Rendered> {
        let render = |suffix: &str| {
            let name = format!("{}.{suffix}", kind.as_str());
            self.env
                .get_template(&name)
                .and_then(|t| t.render(ctx))
                .map_err(|e| AppError::Internal(anyhow::anyhow!("email template {name}: {e}")))
        };
        Ok(Rendered {
            // a subject is one line whatever the template holds
            subject: render("subject.txt")?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned(),
            text: render("txt")?,
            html: render("html")?,
        })
    }
}

/// Writes a message to the outbox inside the caller's transaction and wakes the couriers when it
/// commits (`NOTIFY` is delivered at commit).
pub async fn enqueue(
    conn: &mut PgConnection,
    templates: &Templates,
    kind: Kind,
    user_id: Option<Uuid>,
    recipient: &str,
    ctx: &Context,
) -> AppResult<Uuid> {
    let rendered = templates.render(kind, ctx)?;
    let id = Uuid::now_v7();
    let domain = recipient.rsplit('@').next().unwrap_or("localhost");
    repo::messages::insert(
        &mut *conn,
        &repo::messages::NewMessage {
            id,
            kind: kind.as_str(),
            user_id,
            recipient,
            subject: &rendered.subject,
            body_text: &rendered.text,
            body_html: &rendered.html,
            message_id: &format!("<{id}@{domain}>"),
        },
    )
    .await?;
    repo::messages::notify(&mut *conn).await?;
    Ok(id)
}

/// Placeholder addresses (`<network>-<id>@users.invalid`) receive nothing.
pub fn deliverable(address: &str) -> bool {
    !address.to_ascii_lowercase().ends_with("@users.invalid")
}

/// A notice to the user's current address (no link that acts).
pub async fn notice(
    conn: &mut PgConnection,
    state: &AppState,
    kind: Kind,
    user: &UserRow,
    mut ctx: Context,
) -> AppResult<()> {
    if !deliverable(&user.email) {
        return Ok(());
    }
    ctx.name = user.first_name.clone();
    enqueue(conn, &state.mail, kind, Some(user.id), &user.email, &ctx).await?;
    Ok(())
}

/// A verification link for the user's current address (`welcome` or `email_verification`): a
/// new single-use token bound to that address, stored as a hash, written with its mail.
pub async fn send_verification(
    conn: &mut PgConnection,
    state: &AppState,
    user: &UserRow,
    kind: Kind,
) -> AppResult<()> {
    if !deliverable(&user.email) {
        return Ok(());
    }
    let token = random_token();
    let ttl = state.settings.auth.verify_token_ttl_secs;
    let expires_at = Utc::now() + chrono::Duration::seconds(ttl);
    repo::verification_tokens::insert(
        &mut *conn,
        &token_hash(&token),
        user.id,
        &user.email,
        expires_at,
    )
    .await?;
    let ctx = Context {
        name: user.first_name.clone(),
        link: Some(state.mail.link("verify-email", Some(&token))),
        hours: Some(ttl / 3600),
        ..Context::default()
    };
    enqueue(conn, &state.mail, kind, Some(user.id), &user.email, &ctx).await?;
    Ok(())
}

/// True when the user was sent (or is about to be sent) a mail of this kind within `secs`.
pub async fn sent_recently(
    conn: &mut PgConnection,
    user_id: Uuid,
    kind: Kind,
    secs: i64,
) -> AppResult<bool> {
    Ok(
        repo::messages::latest_of(&mut *conn, user_id, kind.as_str())
            .await?
            .is_some_and(|at: DateTime<Utc>| Utc::now() - at < chrono::Duration::seconds(secs)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn html_escapes_user_supplied_names_and_text_keeps_them() {
        let settings = Settings::load(None).unwrap();
        let t = Templates::load(&settings.email).unwrap();
        let ctx = Context {
            name: "<script>alert(1)</script>".into(),
            link: Some(t.link("verify-email", Some("tok"))),
            hours: Some(24),
            ..Context::default()
        };
        let r = t.render(Kind::Welcome, &ctx).unwrap();
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(r.html.contains("&lt;script&gt;"), "{}", r.html);
        assert!(r.text.contains("<script>alert(1)</script>"));
        assert!(r
            .text
            .contains("http://localhost:3000/verify-email?token=tok"));
        assert!(!r.subject.contains('\n'));
    }

    #[test]
    fn every_kind_renders() {
        let settings = Settings::load(None).unwrap();
        let t = Templates::load(&settings.email).unwrap();
        for kind in Kind::ALL {
            let r = t.render(kind, &Context::default()).unwrap();
            assert!(!r.subject.is_empty(), "{kind:?}");
        }
    }
}

/// What an admin filters the outbox by.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub user_id: Option<Uuid>,
    pub kind: Option<String>,
    pub status: Option<String>,
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// A page of messages (metadata only), newest first, and the id to continue before.
pub async fn list(
    state: &AppState,
    f: &MessageFilter,
) -> AppResult<(Vec<MessageEntry>, Option<Uuid>)> {
    let rows = repo::messages::page(
        &state.db,
        &repo::messages::Filter {
            user_id: f.user_id,
            kind: f.kind.as_deref(),
            status: f.status.as_deref(),
            before: f.before,
            limit: f.limit + 1,
        },
    )
    .await?;
    let (rows, next) = super::split_page(rows, f.limit, |m| m.id);
    Ok((rows.into_iter().map(Into::into).collect(), next))
}

/// Messages waiting to be sent.
pub async fn backlog(state: &AppState) -> AppResult<i64> {
    Ok(repo::messages::backlog(&state.db).await?)
}
