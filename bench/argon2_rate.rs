//! The machine's argon2id ceiling: hashes per second on 2 threads at the service's configured
//! parameters (same crate, same parameters). `cargo run --release --example argon2_rate`.

use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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
    // Two ways to hash: the crate's `hash_password` (a fresh 19 MiB buffer per hash, what a plain
    // program does) and a buffer reused across hashes, as the service does (one arena per
    // semaphore permit, which saves the allocation and page faults). The benchmark compares the
    // service with both.
    let fresh = rate(&params, false);
    let reused = rate(&params, true);
    println!(
        "argon2id m={} t={} p={} threads={THREADS}: {fresh:.1} hashes/s with a fresh buffer, \
         {reused:.1} with a reused one",
        a.argon2_memory_kib, a.argon2_iterations, a.argon2_parallelism
    );
    println!("ARGON2_FRESH={fresh:.1}");
    println!("ARGON2_REUSED={reused:.1}");
    Ok(())
}

const THREADS: usize = 2;

/// Hashes per second on `THREADS` threads for 6 seconds.
fn rate(params: &Params, reuse_buffer: bool) -> f64 {
    let run_for = Duration::from_secs(6);
    let started = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let params = params.clone();
            std::thread::spawn(move || {
                let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
                let mut arena = vec![Block::new(); params.block_count()];
                let mut out = [0u8; 32];
                let mut n = 0u64;
                while started.elapsed() < run_for {
                    let salt = SaltString::generate(&mut rand::rngs::OsRng);
                    let done = if reuse_buffer {
                        let mut salt_buf = [0u8; 64];
                        salt.as_salt()
                            .decode_b64(&mut salt_buf)
                            .ok()
                            .and_then(|salt| {
                                hasher
                                    .hash_password_into_with_memory(
                                        b"benchmark password",
                                        salt,
                                        &mut out,
                                        &mut arena,
                                    )
                                    .ok()
                            })
                            .is_some()
                    } else {
                        hasher.hash_password(b"benchmark password", &salt).is_ok()
                    };
                    n += u64::from(done);
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    total as f64 / started.elapsed().as_secs_f64()
}
