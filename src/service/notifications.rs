//! The in-app inbox: notifications written by internal services (the server route) and by this
//! service itself (role requests, password changes), read and streamed by their user.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::PgConnection;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::Principal;
use crate::error::{AppError, AppResult};
use crate::repo::db::Db;
use crate::repo::notifications::{self as repo, NewNotification, NotificationRow, CHANNEL};
use crate::state::AppState;

/// One notification as its user sees it.
#[derive(Debug, Clone)]
pub struct Notification {
    pub id: Uuid,
    pub kind: String,
    pub title: String,
    pub body: Option<String>,
    pub link: Option<String>,
    pub data: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

impl From<NotificationRow> for Notification {
    fn from(r: NotificationRow) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            title: r.title,
            body: r.body,
            link: r.link,
            data: r.data,
            created_at: r.created_at,
            read_at: r.read_at,
        }
    }
}

/// What a notification says (checked by the route that takes it from a client; the title is
/// stored trimmed).
pub struct Notice<'a> {
    pub kind: &'a str,
    pub title: &'a str,
    pub body: Option<&'a str>,
    pub link: Option<&'a str>,
    pub data: Option<&'a Value>,
}

fn not_found() -> AppError {
    AppError::NotFound("notification_not_found", "no such notification")
}

impl Notice<'_> {
    fn for_user(&self, user_id: Uuid) -> NewNotification<'_> {
        NewNotification {
            user_id,
            kind: self.kind,
            title: self.title.trim(),
            body: self.body,
            link: self.link,
            data: self.data,
        }
    }
}

/// Writes a notification in the caller's transaction (it reaches streams at commit).
pub(super) async fn notify(
    conn: &mut PgConnection,
    user_id: Uuid,
    n: &Notice<'_>,
) -> sqlx::Result<Notification> {
    Ok(repo::insert(conn, &n.for_user(user_id)).await?.into())
}

/// The same notice for every active admin.
pub(super) async fn notify_admins(conn: &mut PgConnection, n: &Notice<'_>) -> sqlx::Result<u64> {
    let admins = crate::repo::users::active_admins(&mut *conn).await?;
    repo::insert_many(conn, &admins, &n.for_user(Uuid::nil())).await
}

/// An internal service notifies a user: 404 for an unknown user, 400 `already_deleted` for a
/// soft-deleted one.
pub async fn create(state: &AppState, user_id: Uuid, n: &Notice<'_>) -> AppResult<Notification> {
    let mut tx = state.db.begin().await?;
    let user = crate::repo::users::find_by_id(&mut *tx, user_id)
        .await?
        .ok_or_else(AppError::user_not_found)?;
    if user.is_deleted() {
        return Err(AppError::AlreadyDeleted);
    }
    let created = notify(&mut tx, user_id, n).await?;
    tx.commit().await?;
    Ok(created)
}

/// A page of the user's notifications, newest first, and the id to continue before.
async fn read_page(
    state: &AppState,
    user_id: Uuid,
    unread_only: bool,
    before: Option<Uuid>,
    limit: i64,
) -> AppResult<(Vec<Notification>, Option<Uuid>)> {
    let key = repo::PageKey {
        user_id,
        unread_only,
        before,
        limit: limit + 1,
    };
    let rows = state
        .notification_pages
        .read(key)
        .await
        .map_err(super::read_failed)?
        .unwrap_or_default();
    let (rows, next) = super::split_page(rows, limit, |r| r.id);
    Ok((rows.into_iter().map(Into::into).collect(), next))
}

/// The first pages of inboxes (no cursor) this instance has answered, each as its route rendered
/// it and with the inbox version it was read at. Opening the inbox is frequent and its first page
/// rarely changes between two openings; a kept page is answered again only when the user's
/// version, read anew for the request (`notification_inboxes`, bumped in the same transaction as
/// any change), is still the one it was read at. So every request sees every change committed
/// before it, on any instance, as if nothing were kept; what is saved is reading and rendering
/// twenty rows. Bounded in bytes (the least used pages go first).
pub struct InboxPages(quick_cache::sync::Cache<FirstPage, KeptPage, PageWeight>);

/// A first page: the user, unread only, the page size.
type FirstPage = (Uuid, bool, i64);

#[derive(Clone)]
struct KeptPage {
    version: i64,
    body: Bytes,
}

#[derive(Clone)]
struct PageWeight;

impl quick_cache::Weighter<FirstPage, KeptPage> for PageWeight {
    fn weight(&self, _: &FirstPage, page: &KeptPage) -> u64 {
        // the body and about what the entry and its key take besides
        page.body.len() as u64 + 96
    }
}

impl InboxPages {
    /// At most `bytes` of kept pages.
    pub fn new(bytes: u64) -> Self {
        // quick_cache sizes its table from an estimate of the entries (a page of 20 is ~6 KiB)
        let entries = (bytes / 4096).max(16) as usize;
        Self(quick_cache::sync::Cache::with_weighter(
            entries, bytes, PageWeight,
        ))
    }
}

/// A page of the user's inbox (newest first, before `before`, or from the newest), as `render`
/// makes it from the rows and the id to continue before. A first page is the one this instance
/// keeps when the user's inbox has not changed since it was read, else read (and kept) now; a
/// page further on is read every time. See [`InboxPages`].
pub async fn page(
    state: &AppState,
    user_id: Uuid,
    unread_only: bool,
    before: Option<Uuid>,
    limit: i64,
    render: impl FnOnce(Vec<Notification>, Option<Uuid>) -> AppResult<Bytes>,
) -> AppResult<Bytes> {
    if before.is_some() {
        let (items, next) = read_page(state, user_id, unread_only, before, limit).await?;
        return render(items, next);
    }
    // read before the page: a page read after its version is at least as new as the version
    // says (a change in between only makes the next request read the page again)
    let version = state
        .inbox_versions
        .read(user_id)
        .await
        .map_err(super::read_failed)?
        .unwrap_or(0);
    let key = (user_id, unread_only, limit);
    if let Some(kept) = state.inbox_pages.0.get(&key) {
        if kept.version == version {
            return Ok(kept.body);
        }
    }
    let (items, next) = read_page(state, user_id, unread_only, None, limit).await?;
    let body = render(items, next)?;
    state.inbox_pages.0.insert(
        key,
        KeptPage {
            version,
            body: body.clone(),
        },
    );
    Ok(body)
}

pub async fn unread_count(state: &AppState, user_id: Uuid) -> AppResult<i64> {
    Ok(repo::unread_count(&state.db, user_id).await?)
}

pub async fn mark_read(state: &AppState, user_id: Uuid, id: Uuid) -> AppResult<Notification> {
    repo::mark_read(&state.db, user_id, id)
        .await?
        .map(Into::into)
        .ok_or_else(not_found)
}

pub async fn mark_all_read(state: &AppState, user_id: Uuid) -> AppResult<()> {
    repo::mark_all_read(&state.db, user_id).await?;
    Ok(())
}

pub async fn delete(state: &AppState, user_id: Uuid, id: Uuid) -> AppResult<()> {
    if repo::delete_own(&state.db, user_id, id).await? {
        Ok(())
    } else {
        Err(not_found())
    }
}

// ---- the live stream ----

/// New notifications handed to a stream: at most this many wait for a slow client, which is then
/// disconnected (it reconnects with `Last-Event-ID` and misses nothing).
const STREAM_BUFFER: usize = 64;
/// Notifications replayed per query (a `Last-Event-ID` far in the past is replayed page by page).
const REPLAY_PAGE: i64 = 500;

/// The instance's fan-out: one `LISTEN` connection (started with the first stream), each
/// notification handed to its user's open streams. Streams hold no database connection.
#[derive(Clone, Default)]
pub struct Hub(Arc<HubInner>);

#[derive(Default)]
struct HubInner {
    /// per user, each open stream's id and sender
    streams: Mutex<HashMap<Uuid, Vec<StreamSender>>>,
    next: AtomicU64,
    listening: AtomicBool,
    /// whether the listening connection is up (streams open only then: one opened before would
    /// miss what is created until it is)
    ready: tokio::sync::watch::Sender<bool>,
}

type StreamSender = (u64, mpsc::Sender<Arc<Notification>>);

/// A stream's registration; dropping it unregisters.
struct Subscription {
    hub: Hub,
    user_id: Uuid,
    id: u64,
    rx: mpsc::Receiver<Arc<Notification>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut streams = self.hub.0.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = streams.get_mut(&self.user_id) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                streams.remove(&self.user_id);
            }
        }
    }
}

impl Hub {
    /// Streams open on this instance.
    pub fn open_streams(&self) -> usize {
        let streams = self.0.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.values().map(Vec::len).sum()
    }

    /// Registers a stream once the listening connection is up (started by the first stream);
    /// 503 when it is not up within the pool's acquire time (the database is away).
    async fn subscribe(&self, state: &AppState, user_id: Uuid) -> AppResult<Subscription> {
        if !self.0.listening.swap(true, Ordering::AcqRel) {
            tokio::spawn(listen(self.clone(), state.db.clone()));
        }
        let mut ready = self.0.ready.subscribe();
        let wait = Duration::from_secs(state.settings.database.acquire_timeout_secs);
        let up = tokio::time::timeout(wait, ready.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok());
        if up {
            Ok(self.register(user_id))
        } else {
            Err(AppError::Unavailable)
        }
    }

    fn register(&self, user_id: Uuid) -> Subscription {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        self.0
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(user_id)
            .or_default()
            .push((id, tx));
        Subscription {
            hub: self.clone(),
            user_id,
            id,
            rx,
        }
    }

    /// Whether the user has a stream open here.
    fn has_streams(&self, user_id: Uuid) -> bool {
        let streams = self.0.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.contains_key(&user_id)
    }

    /// Hands a new notification to its user's streams; a stream whose buffer is full is dropped
    /// (its client reconnects and replays), so a slow client never holds up the others.
    fn dispatch(&self, user_id: Uuid, n: &Arc<Notification>) {
        let mut streams = self.0.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = streams.get_mut(&user_id) {
            list.retain(|(_, tx)| tx.try_send(n.clone()).is_ok());
        }
    }

    /// Ends every open stream (the listening connection was lost: what arrives meanwhile would
    /// be missed, so clients reconnect and replay with `Last-Event-ID`).
    fn end_all(&self) {
        self.0.ready.send_replace(false);
        self.0
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// The instance's listening loop: reconnects by itself after the database restarts.
async fn listen(hub: Hub, db: Db) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Some(mut listener) = db.listen(CHANNEL).await {
            backoff = Duration::from_millis(100);
            hub.0.ready.send_replace(true);
            // the connection lost (or a read failed): what came meanwhile would be missed, so
            // the streams end (below) and their clients replay; a new connection is made
            while deliver(&hub, &db, &mut listener).await {}
            tracing::warn!("notifications: the listening connection was lost; ending streams");
        }
        hub.end_all();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Waits for new notifications, then reads those of users with a stream here — one query for all
/// that arrived together, however many streams each has — and hands them over in order. False
/// when the connection is lost or the read fails.
async fn deliver(hub: &Hub, db: &Db, listener: &mut PgListener) -> bool {
    let Ok(Some(first)) = listener.try_recv().await else {
        return false;
    };
    let mut wanted = Vec::new();
    let mut next = Some(first);
    while let Some(n) = next {
        let mut parts = n.payload().split(' ');
        let user = parts.next().and_then(|u| u.parse::<Uuid>().ok());
        let id = parts.next().and_then(|i| i.parse::<Uuid>().ok());
        if let (Some(user), Some(id)) = (user, id) {
            if hub.has_streams(user) {
                wanted.push(id);
            }
        }
        next = listener.next_buffered();
    }
    if wanted.is_empty() {
        return true;
    }
    match repo::by_ids(db, &wanted).await {
        Ok(rows) => {
            for row in rows {
                let user_id = row.user_id;
                hub.dispatch(user_id, &Arc::new(row.into()));
            }
            true
        }
        Err(_) => false,
    }
}

/// What a stream sends.
pub enum StreamItem {
    Notification(Notification),
    /// nothing new; the session is still alive
    Heartbeat,
}

/// A user's live notifications: first those after `last_event_id` (replay), then each new one as
/// it is created on any instance, with a heartbeat every `notifications.heartbeat_secs`. Ends when
/// the session is revoked or expires (checked at each heartbeat), when the client is too slow, or
/// when the instance loses its listening connection.
pub async fn stream(
    state: &AppState,
    p: &Principal,
    last_event_id: Option<Uuid>,
) -> AppResult<impl futures::Stream<Item = StreamItem> + Send + 'static> {
    let sub = state.notification_hub.subscribe(state, p.user_id).await?;
    let heartbeat = Duration::from_secs(state.settings.notifications.heartbeat_secs);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let s = Stream {
        state: state.clone(),
        user_id: p.user_id,
        session_id: p.session_id,
        sub,
        replay: last_event_id,
        pending: VecDeque::new(),
        replayed: HashSet::new(),
        ticks,
    };
    Ok(futures::stream::unfold(s, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    }))
}

struct Stream {
    state: AppState,
    user_id: Uuid,
    session_id: Uuid,
    sub: Subscription,
    /// where the replay goes on (the `Last-Event-ID`, then each full page's last id), until read
    replay: Option<Uuid>,
    pending: VecDeque<Notification>,
    /// ids sent by the replay (a live copy of one is skipped)
    replayed: HashSet<Uuid>,
    ticks: tokio::time::Interval,
}

impl Stream {
    async fn next(&mut self) -> Option<StreamItem> {
        if self.pending.is_empty() {
            if let Some(after) = self.replay.take() {
                // subscribed first, then read: a notification created in between comes both ways
                // and is sent once
                let rows = repo::after(&self.state.db, self.user_id, after, REPLAY_PAGE)
                    .await
                    .ok()?;
                if rows.len() as i64 == REPLAY_PAGE {
                    // a full page: the next one after this page's sending
                    self.replay = rows.last().map(|r| r.id);
                }
                self.replayed.extend(rows.iter().map(|r| r.id));
                self.pending
                    .extend(rows.into_iter().map(Notification::from));
            }
        }
        if let Some(n) = self.pending.pop_front() {
            return Some(StreamItem::Notification(n));
        }
        loop {
            tokio::select! {
                n = self.sub.rx.recv() => {
                    let n = n?;
                    if self.replayed.contains(&n.id) {
                        continue;
                    }
                    return Some(StreamItem::Notification(Notification::clone(&n)));
                }
                _ = self.ticks.tick() => {
                    return self.alive().await.then_some(StreamItem::Heartbeat);
                }
            }
        }
    }

    /// Whether the stream's session is still live (an outage ends the stream too).
    async fn alive(&self) -> bool {
        matches!(
            self.state.session_reads.read(self.session_id).await,
            // `live` covers the user: an active one's live session
            Ok(Some(s)) if s.live
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note() -> Arc<Notification> {
        Arc::new(Notification {
            id: Uuid::now_v7(),
            kind: "k".into(),
            title: "t".into(),
            body: None,
            link: None,
            data: None,
            created_at: Utc::now(),
            read_at: None,
        })
    }

    #[test]
    fn a_stream_that_falls_behind_is_dropped_and_the_others_keep_receiving() {
        let hub = Hub::default();
        let (user, other) = (Uuid::now_v7(), Uuid::now_v7());
        let mut slow = hub.register(user);
        let mut fast = hub.register(user);
        let mut elsewhere = hub.register(other);
        for _ in 0..STREAM_BUFFER {
            hub.dispatch(user, &note());
            assert!(fast.rx.try_recv().is_ok());
        }
        assert_eq!(hub.open_streams(), 3);
        let last = note();
        hub.dispatch(user, &last);
        assert_eq!(hub.open_streams(), 2, "the full one is gone");
        assert_eq!(fast.rx.try_recv().ok().map(|n| n.id), Some(last.id));
        // the slow one still reads what it had, then learns it was dropped (its client replays)
        for _ in 0..STREAM_BUFFER {
            assert!(slow.rx.try_recv().is_ok());
        }
        assert!(matches!(
            slow.rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert!(elsewhere.rx.try_recv().is_err(), "other users see nothing");
    }

    #[test]
    fn losing_the_listener_ends_every_stream() {
        let hub = Hub::default();
        let mut a = hub.register(Uuid::now_v7());
        hub.end_all();
        assert_eq!(hub.open_streams(), 0);
        assert!(matches!(
            a.rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn kept_pages_stay_within_their_bytes() {
        let pages = InboxPages::new(64 * 1024);
        for i in 0..200u32 {
            let page = KeptPage {
                version: 1,
                body: Bytes::from(vec![b' '; 4000]),
            };
            pages.0.insert((Uuid::from_u128(i.into()), false, 20), page);
        }
        assert!(pages.0.weight() <= 64 * 1024, "{}", pages.0.weight());
        assert!(pages.0.len() >= 8, "{}", pages.0.len());
    }
}
