//! The machine's argon2id ceiling: hashes per second on 2 threads at the service's configured
//! parameters (same crate, same parameters). `cargo run --release --example argon2_rate`.

use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use users_service::config::Settings;

fn main() -> anyhow::Result<()> {
    let settings = Settings::load(None)?;
    let a = &settings.auth;
    let params = Params::new(
        a.argon2_memory_kib,
        a.argon2_iterations,
        a.argon2_parallelism,
        None,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let threads = 2;
    let run_for = Duration::from_secs(8);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let params = params.clone();
            std::thread::spawn(move || {
                let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                let mut n = 0u64;
                while started.elapsed() < run_for {
                    let salt = SaltString::generate(&mut rand::rngs::OsRng);
                    if hasher.hash_password(b"benchmark password", &salt).is_ok() {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    println!(
        "argon2id m={} t={} p={} threads={threads}: {rate:.1} hashes/s",
        a.argon2_memory_kib, a.argon2_iterations, a.argon2_parallelism
    );
    println!("ARGON2_RATE={rate:.1}");
    Ok(())
}
