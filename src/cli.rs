//! Command line: `serve` (default), `migrate`, `create-admin`.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::app;
use crate::config::Settings;
use crate::domain::{Email, Role};
use crate::service::{users, Caller};

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
        Command::CreateAdmin { email, first_name } => {
            let email = Email::try_from(email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let password = SecretString::from(line.trim_end_matches(['\r', '\n']).to_owned());
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
