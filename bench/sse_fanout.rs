//! The benchmark's notification fan-out (bench/run.sh):
//!
//! `sse_fanout BASE TOKENS_FILE SERVER_KEY STREAMS RATE SECONDS` opens STREAMS notification streams
//! (round-robin over the access tokens in TOKENS_FILE), then creates notifications through the
//! server route at RATE a second for SECONDS, each for a random one of those users, and measures
//! each delivery from the create call's answer to the event's arrival on every stream of that user.
//! Prints `KEY=value` lines: streams opened and still open, deliveries expected and received,
//! latency p50/p99 in ms.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

#[derive(Default)]
struct Seen {
    /// notification id → when its create call answered
    created: HashMap<String, Instant>,
    /// (notification id, arrival) for every delivery
    arrivals: Vec<(String, Instant)>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, tokens, key, streams, rate, seconds] = &args[..] else {
        anyhow::bail!("usage: sse_fanout BASE TOKENS_FILE SERVER_KEY STREAMS RATE SECONDS");
    };
    let (streams, rate, seconds): (usize, u64, u64) =
        (streams.parse()?, rate.parse()?, seconds.parse()?);
    let tokens: Vec<String> = std::fs::read_to_string(tokens)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;

    // each token's user id
    let mut users = Vec::with_capacity(tokens.len());
    for t in &tokens {
        let me: serde_json::Value = client
            .get(format!("{base}/api/v1/private/users/me"))
            .bearer_auth(t)
            .send()
            .await?
            .json()
            .await?;
        users.push(me["id"].as_str().unwrap_or_default().to_owned());
    }
    let mut streams_of: HashMap<String, usize> = HashMap::new();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut readers = Vec::with_capacity(streams);
    for i in 0..streams {
        let token = tokens[i % tokens.len()].clone();
        *streams_of
            .entry(users[i % users.len()].clone())
            .or_default() += 1;
        // one connection per stream, as browsers have
        let client = reqwest::Client::new();
        let url = format!("{base}/api/v1/private/users/me/notifications/stream");
        let (seen, open) = (seen.clone(), open.clone());
        readers.push(tokio::spawn(async move {
            let Ok(mut resp) = client.get(url).bearer_auth(token).send().await else {
                return;
            };
            if !resp.status().is_success() {
                return;
            }
            open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut buf = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                let at = Instant::now();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id:")) {
                        let id = id.trim().to_owned();
                        seen.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .arrivals
                            .push((id, at));
                    }
                }
            }
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }));
    }
    // every stream connected
    let deadline = Instant::now() + Duration::from_secs(60);
    while open.load(std::sync::atomic::Ordering::Relaxed) < streams && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let opened = open.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let total = rate * seconds;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut creates = Vec::with_capacity(total as usize);
    let mut expected = 0usize;
    for n in 0..total {
        let due = started + gap * n as u32;
        tokio::time::sleep_until(due.into()).await;
        let user = users[rand::thread_rng().gen_range(0..opened.min(users.len()).max(1))].clone();
        expected += streams_of.get(&user).copied().unwrap_or(0);
        let (client, seen, base, key) = (client.clone(), seen.clone(), base.clone(), key.clone());
        creates.push(tokio::spawn(async move {
            let res = client
                .post(format!("{base}/api/v1/server/users/{user}/notifications"))
                .bearer_auth(key)
                .json(&serde_json::json!({"kind": "bench.fanout", "title": format!("n{n}")}))
                .send()
                .await;
            let answered = Instant::now();
            if let Ok(res) = res {
                if let Ok(body) = res.json::<serde_json::Value>().await {
                    if let Some(id) = body["id"].as_str() {
                        seen.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .created
                            .insert(id.to_owned(), answered);
                    }
                }
            }
        }));
    }
    for c in creates {
        let _ = c.await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still_open = open.load(std::sync::atomic::Ordering::Relaxed);

    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    let mut latencies: Vec<f64> = seen
        .arrivals
        .iter()
        .filter_map(|(id, at)| {
            let created = seen.created.get(id)?;
            // the event may beat the create call's answer (it is sent at commit): 0
            Some(at.saturating_duration_since(*created).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!("STREAMS_OPENED={opened}");
    println!("STREAMS_STILL_OPEN={still_open}");
    println!("NOTIFICATIONS_CREATED={}", seen.created.len());
    println!("DELIVERIES_EXPECTED={expected}");
    println!("DELIVERIES_RECEIVED={}", latencies.len());
    println!("LATENCY_P50_MS={:.1}", pct(0.50));
    println!("LATENCY_P99_MS={:.1}", pct(0.99));
    for r in readers {
        r.abort();
    }
    Ok(())
}
