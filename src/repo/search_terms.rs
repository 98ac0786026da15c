//! Which part of an admin search's text the trigram index is asked for.
//!
//! A trigram index answers `search_text like '%user12345%'` by intersecting the posting lists of
//! every trigram of the pattern; `use` and `ser` are in every seeded user's email, so their lists are
//! as long as the table and reading them is most of the query (0.7 ms of 0.8 at 100 000 users, 8 ms
//! at 1 000 000). The index is asked only for the rarest stretch of the text (`12345`: 0.08 ms and
//! 0.26 ms) and every candidate row is then checked against the whole text, so the answer is exactly
//! the same; only the work changes. (The whole-text check is written so the planner cannot use the
//! index for it but still sees how selective it is; see `repo::users::search`.)
//!
//! How rare a trigram is comes from a sample of the table (a few thousand rows, `tablesample`),
//! taken in the background when the first search arrives and again after [`MAX_AGE`]. Until the
//! first sample lands the index is asked for the whole text, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::db::Db;

/// How long a sample serves before the next search takes a new one.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// About how many rows a sample reads.
const SAMPLE_ROWS: f64 = 5_000.0;
/// Longest stretch considered (longer ones only add posting lists to read).
const MAX_WINDOW: usize = 24;
/// What checking one candidate row costs, in posting-list entries read (a heap fetch and a recheck
/// against a few microseconds of decoding; measured with EXPLAIN ANALYZE on the benchmark's table).
const ROW_COST: f64 = 300.0;

/// Trigram frequencies of `users.search_text`, shared by every search.
#[derive(Clone, Default)]
pub struct SearchTerms(Arc<Inner>);

#[derive(Default)]
struct Inner {
    sample: RwLock<Option<Sample>>,
    refreshing: AtomicBool,
}

struct Sample {
    taken: Instant,
    /// rows in the table (the planner's estimate)
    table_rows: f64,
    /// rows the sample read
    sample_rows: f64,
    /// per trigram, how many sampled rows hold it
    counts: HashMap<String, f64>,
}

impl SearchTerms {
    /// The stretch of `query` (lowercased) to give the trigram index: the whole query until a
    /// sample exists, or when no stretch is cheaper.
    pub fn index_pattern<'q>(&self, query: &'q str) -> &'q str {
        let sample = self.0.sample.read().unwrap_or_else(|e| e.into_inner());
        match sample.as_ref() {
            Some(sample) => rarest_stretch(query, |t| sample.estimated_rows(t)),
            None => query,
        }
    }

    /// Starts a new sample in the background when there is none or it is older than [`MAX_AGE`]
    /// (one at a time); the search that asks does not wait for it.
    pub fn refresh_if_stale(&self, db: &Db) {
        let stale = {
            let sample = self.0.sample.read().unwrap_or_else(|e| e.into_inner());
            sample.as_ref().is_none_or(|s| s.taken.elapsed() > MAX_AGE)
        };
        if !stale || self.0.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (terms, db) = (self.clone(), db.clone());
        tokio::spawn(async move {
            if let Err(error) = terms.refresh(&db).await {
                tracing::warn!(%error, "could not sample the users' search trigrams");
            }
            terms.0.refreshing.store(false, Ordering::Release);
        });
    }

    /// Takes a new sample now.
    pub async fn refresh(&self, db: &Db) -> sqlx::Result<()> {
        crate::telemetry::db_span("search_terms.refresh", async move {
            let table_rows: f64 = super::db::query_scalar(
                "select greatest(reltuples, 0)::float8 from pg_class where oid = 'users'::regclass",
            )
            .fetch_one(db)
            .await?;
            let percent = if table_rows <= SAMPLE_ROWS {
                100.0
            } else {
                (SAMPLE_ROWS / table_rows * 100.0).max(0.01)
            };
            // `system` sampling reads whole pages: cheap, and rows on one page are as good as any here;
            // the row with no trigram (`null`) carries the number of rows sampled. The limit bounds a
            // table never analysed (no row estimate: sampled whole)
            let rows: Vec<(Option<String>, i64)> = super::db::query_as(
                "with s as (select search_text from users tablesample system ($1) limit $2)
                 select null, count(*) from s
                 union all
                 select t, count(*) from s, unnest(show_trgm(s.search_text)) t group by t",
            )
            .bind(percent)
            .bind(SAMPLE_ROWS as i64)
            .persistent(false)
            .fetch_all(db)
            .await?;
            let mut counts = HashMap::with_capacity(rows.len());
            let mut sample_rows = 0.0;
            for (trigram, count) in rows {
                match trigram {
                    Some(trigram) => counts.insert(trigram, count as f64),
                    None => {
                        sample_rows = count as f64;
                        None
                    }
                };
            }
            let sample = Sample {
                taken: Instant::now(),
                table_rows: table_rows.max(sample_rows),
                sample_rows: sample_rows.max(1.0),
                counts,
            };
            *self.0.sample.write().unwrap_or_else(|e| e.into_inner()) = Some(sample);
            Ok(())
        })
        .await
    }
}

impl Sample {
    /// Rows of the table that hold `trigram`. pg_trgm shows a trigram with a non-ASCII character
    /// as a hash, which this lookup cannot name: those count as one row in a hundred. A trigram the
    /// sample never saw counts as half a sampled row.
    fn estimated_rows(&self, trigram: &str) -> f64 {
        let scale = self.table_rows / self.sample_rows;
        if !trigram.is_ascii() {
            return self.table_rows / 100.0;
        }
        self.counts.get(trigram).copied().unwrap_or(0.5) * scale
    }
}

/// The cheapest stretch of `query` to look up: inside one run of letters and digits (pg_trgm's
/// words, so the index sees exactly the trigrams counted here), at least three characters, priced
/// as the posting-list entries read plus [`ROW_COST`] per candidate row expected. The candidates are
/// estimated as the rarest trigram's rows, times 0.3 for each further trigram (they are far from
/// independent, so not the product of their frequencies; 0.3 matched the benchmark's table).
fn rarest_stretch(query: &str, rows_of: impl Fn(&str) -> f64) -> &str {
    let chars: Vec<(usize, char)> = query.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map_or(query.len(), |&(at, _)| at);
    // rows of the trigram starting at each character, where its three characters are a word's
    let trigram_rows: Vec<Option<f64>> = (0..chars.len())
        .map(|i| {
            let word = chars
                .get(i..i + 3)?
                .iter()
                .all(|(_, c)| c.is_alphanumeric());
            word.then(|| rows_of(&query[end_of(i)..end_of(i + 3)]))
        })
        .collect();
    let mut best: Option<(f64, usize, usize)> = None;
    for start in 0..chars.len() {
        let (mut read, mut rarest, mut trigrams) = (0.0, f64::INFINITY, 0);
        let stretch = trigram_rows[start..].iter().take(MAX_WINDOW - 2);
        for (first, rows) in (start..).zip(stretch) {
            let Some(rows) = *rows else {
                break;
            };
            read += rows;
            rarest = rarest.min(rows);
            let candidates = rarest * 0.3f64.powi(trigrams);
            trigrams += 1;
            let cost = read + ROW_COST * candidates;
            if best.is_none_or(|(c, _, _)| cost < c) {
                best = Some((cost, start, first + 3));
            }
        }
    }
    match best {
        Some((_, start, end)) => &query[end_of(start)..end_of(end)],
        None => query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark's shape: `user` + a number in every row, digits rare.
    fn rows(t: &str) -> f64 {
        match t {
            "use" | "ser" => 100_000.0,
            "er1" => 11_000.0,
            "r12" => 1_100.0,
            _ => 300.0,
        }
    }

    #[test]
    fn the_index_is_asked_for_the_rare_digits_not_the_common_prefix() {
        let picked = rarest_stretch("user12345", rows);
        assert!(
            picked.ends_with("12345") && !picked.contains("se"),
            "{picked}"
        );
    }

    #[test]
    fn a_query_of_common_trigrams_only_is_kept_whole_enough_to_be_selective() {
        assert_eq!(rarest_stretch("user", rows), "user");
    }

    #[test]
    fn stretches_stay_inside_one_word() {
        let picked = rarest_stretch("ivan petrov@x.io", |t| if t == "pet" { 1.0 } else { 1e6 });
        assert!(
            "petrov".contains(picked) && picked.contains("pet"),
            "{picked}"
        );
    }

    #[test]
    fn short_or_wordless_queries_are_kept_as_they_are() {
        assert_eq!(rarest_stretch("ab", rows), "ab");
        assert_eq!(rarest_stretch("+7 9", rows), "+7 9");
        assert_eq!(rarest_stretch("", rows), "");
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let picked = rarest_stretch("иванова", |t| if t == "нов" { 1.0 } else { 1e6 });
        assert!(picked.contains("нов"), "{picked}");
    }
}
