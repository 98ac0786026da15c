//! Command line: `serve` (default), `migrate`, `create-admin`, `rotate-data-key`.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use crate::app;
use crate::auth::data_key::DataKey;
use crate::config::Settings;
use crate::domain::{Email, Role};
use crate::service::{secrets, users, Caller};

/// One line of standard input (without its line end), kept secret.
fn read_line(what: &str) -> anyhow::Result<SecretString> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading {what} from stdin"))?;
    Ok(SecretString::from(
        line.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

#[derive(Debug, Parser)]
#[command(name = "users-service", version, about = "Users and identity service")]
pub struct Cli {
    /// A YAML file layered over config/default.yaml
    #[arg(long, global = true, env = "USERS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and migrate the database, then serve (the default)
    Serve,
    /// Create and migrate the database, then exit
    Migrate,
    /// Create an admin; the password is read from standard input
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Admin")]
        first_name: String,
    },
    /// Re-encrypt every stored secret (TOTP secrets, the signing key) from the configured
    /// auth.data_key to a new key read from standard input (base64 of 32 bytes; an empty line
    /// stores them unencrypted), in one transaction; then restart every instance with the new key
    RotateDataKey,
}

pub async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let listener = app::bind(&settings).await?;
            let pool = app::migrate(&settings).await?;
            let state = app::state(settings, pool).await?;
            app::serve(state, listener).await
        }
        Command::Migrate => {
            app::migrate(&settings).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::RotateDataKey => {
            let old = DataKey::from_base64(settings.auth.data_key.expose_secret())
                .context("auth.data_key")?;
            let new = DataKey::from_base64(read_line("the new data key")?.expose_secret())
                .context("the new data key (standard input)")?;
            let pool = app::migrate(&settings).await?;
            let done = secrets::rotate_data_key(&pool, &old, &new).await?;
            println!(
                "re-encrypted {} signing key(s) and {} TOTP secret(s){}; set auth.data_key to the new key and restart every instance",
                done.signing_keys,
                done.totp_secrets,
                if new.id().is_none() { " (now unencrypted)" } else { "" }
            );
            Ok(())
        }
        Command::CreateAdmin { email, first_name } => {
            let email = Email::try_from(email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
            let password = read_line("the password")?;
            let pool = app::migrate(&settings).await?;
            let state = app::state(settings, pool).await?;
            let profile = users::Profile {
                email,
                first_name,
                last_name: None,
                middle_name: None,
                phone: None,
                role: Role::Admin,
            };
            let user = users::sign_up(&state, &Caller::system(), profile, &password)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", user.id);
            Ok(())
        }
    }
}
