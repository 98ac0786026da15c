use std::process::ExitCode;

use clap::Parser;
use users_service::cli::{self, Cli};
use users_service::config::Settings;
use users_service::telemetry;

/// mimalloc: the request path allocates many small short-lived objects, where glibc's malloc
/// spent a fifth of the service's CPU under load (bench/PROFILE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("users-service: {e}");
            return ExitCode::from(2);
        }
    };
    // flushes the trace exporter when main returns
    let _traces = telemetry::init(settings.log_json(), &settings.telemetry);
    match cli::run(cli, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "users-service stopped");
            eprintln!("users-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}
