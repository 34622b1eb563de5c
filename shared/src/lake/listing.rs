//! Log listings without LIST. delta-rs (its kernel) learns a table's new commits by listing
//! `_delta_log/` from the last checkpoint on every update, commit and change-feed read: 4-9 LIST
//! requests per warm step, the dearest S3 request (12.5x a GET) and most of a 1-minute table's bill.
//! Commit versions are contiguous, so a handle that has listed its log once knows what follows it:
//! the next versions, found by name (`GET <v+1>.json`, `<v+2>.json`, … until one is missing; the
//! bodies are kept for the reads that follow, commit files never change).
//!
//! [`LogListings`] wraps the store a table handle uses: the first listing of a log is a real LIST
//! (a cold open), and later listings of that log from at or above where it started are answered
//! from what it returned plus those probes. What the answers leave out until the next real listing:
//! checkpoints other writers add (a warm update replays only the commits after its own version, so
//! an older checkpoint costs nothing) and log cleanup by other writers (cleanup removes only commits
//! a checkpoint covers, which a warm update never reads). A log is listed for real again after
//! [`RELIST_AFTER`], when a listing starts below what is known, when a known log file turns out to be
//! gone, and after this handle deletes from the log (maintenance). An open of a table without a
//! checkpoint hint or a version 0 is an absent table: answered empty after one HEAD.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use deltalake::{ObjectMeta, ObjectStore, Path};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use super::LogFile;
use crate::storage::StoreRef;

/// How long a log's known listing is trusted before it is listed again (to pick up other writers'
/// checkpoints). At 1-minute steps that is one LIST per ten steps instead of several per step.
pub const RELIST_AFTER: Duration = Duration::from_secs(600);

/// A log with more known entries than this is listed again instead (memory bound per handle).
const MAX_ENTRIES: usize = 20_000;

/// Commit bodies kept per handle, in bytes: a step reads one or two new commits of a few KB.
const MAX_KEPT_BYTES: usize = 1 << 20;

/// A handle further behind than this many commits lists its log instead of probing one by one.
const MAX_PROBES: u64 = 32;

const LOG_DIR: &str = "_delta_log";
const LAST_CHECKPOINT: &str = "_last_checkpoint";

/// What one real listing of a log returned, and the commits found by name since.
struct Known {
    /// The listing's offset: answers start at or above it.
    from: Path,
    listed_at: Instant,
    entries: BTreeMap<Path, ObjectMeta>,
    /// The next commit version to look for.
    next: u64,
    /// Which real listing this is: probes merge only into the listing they started from.
    generation: u64,
}

/// A commit file a probe found, with its body when small enough to keep.
struct Fetched {
    meta: ObjectMeta,
    attributes: Attributes,
    body: Option<Bytes>,
}

/// Requests this wrapper saved or made (read by tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct ListingStats {
    /// Real LIST calls of a log.
    pub listed: u64,
    /// Log listings answered without a LIST.
    pub answered: u64,
    /// Requests for the next commit.
    pub probed: u64,
    /// Reads of a commit answered with the body its probe fetched.
    pub served: u64,
}

/// The store of one table handle, answering warm `_delta_log/` listings without LIST (see the
/// module's documentation). Everything else passes through unchanged.
pub struct LogListings {
    inner: StoreRef,
    state: Arc<Mutex<State>>,
    /// Whether an open may take a missing `0.json` (and no hint) for an absent table: not for the
    /// handle that creates one, which must see a live log whose `0.json` cleanup removed.
    absent_by_head: bool,
}

#[derive(Default)]
struct State {
    logs: HashMap<Path, Known>,
    /// Logs whose `_last_checkpoint` was just found missing.
    unhinted: HashSet<Path>,
    /// The commits probes fetched, newest last: a reader reads each new commit right after (the
    /// kernel, then delta-rs' file replay, then our own readers), and commit files never change.
    bodies: VecDeque<Fetched>,
    generation: u64,
    stats: ListingStats,
}

impl LogListings {
    pub fn new(inner: StoreRef) -> Self {
        Self {
            inner,
            state: Arc::default(),
            absent_by_head: true,
        }
    }

    /// For the handle that creates a table: every open of it lists for real.
    pub fn creating(inner: StoreRef) -> Self {
        Self {
            absent_by_head: false,
            ..Self::new(inner)
        }
    }

    #[cfg(test)]
    pub fn stats(&self) -> ListingStats {
        self.state.lock().map(|s| s.stats).unwrap_or_default()
    }

    /// Drops what is known of the log holding `location`, if it is a log file.
    fn forget(&self, location: &Path) {
        if let Ok(mut state) = self.state.lock() {
            state.forget(location);
        }
    }

    /// A commit a probe fetched, as a GET of it would return it.
    fn kept(&self, location: &Path) -> Option<GetResult> {
        let mut state = self.state.lock().ok()?;
        let kept = state.bodies.iter().find(|f| f.meta.location == *location)?;
        let body = kept.body.clone()?;
        let (meta, attributes) = (kept.meta.clone(), kept.attributes.clone());
        state.stats.served += 1;
        Some(GetResult {
            range: 0..meta.size,
            meta,
            attributes,
            payload: GetResultPayload::Stream(stream::once(async { Ok(body) }).boxed()),
        })
    }

    /// A reader about to use the log's checkpoint hint needs a listing holding that checkpoint: one
    /// this handle has not seen (another writer's, or its own post-commit one) makes the log listed
    /// for real next (the kernel refuses a hint whose checkpoint its listing lacks).
    async fn check_hint(
        &self,
        location: &Path,
        result: GetResult,
    ) -> object_store::Result<GetResult> {
        let (meta, range, attributes) = (
            result.meta.clone(),
            result.range.clone(),
            result.attributes.clone(),
        );
        let bytes = result.bytes().await?;
        let hint = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
        let hinted = hint.as_ref().and_then(|h| h.get("version")?.as_u64());
        let parts = hint
            .as_ref()
            .and_then(|h| h.get("parts")?.as_u64())
            .unwrap_or(1);
        if let (Some(dir), Ok(mut state)) = (log_dir_of(location), self.state.lock()) {
            state.unhinted.remove(&dir);
            // Every part of a multi-part checkpoint, or the listing is not the one it needs.
            let seen = hinted.is_some_and(|v| {
                let stem = format!("{v:020}.checkpoint.");
                state.logs.get(&dir).is_some_and(|known| {
                    let held = known.entries.keys().filter(|p| {
                        p.filename()
                            .is_some_and(|f| f.starts_with(&stem) && f.ends_with(".parquet"))
                    });
                    held.count() as u64 >= parts
                })
            });
            if !seen {
                state.logs.remove(&dir);
            }
        }
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream::once(async { Ok(bytes) }).boxed()),
            meta,
            range,
            attributes,
        })
    }
}

/// `<table>/_delta_log` when `location` is a file directly in a log.
fn log_dir_of(location: &Path) -> Option<Path> {
    let mut parts: Vec<_> = location.parts().collect();
    parts.pop()?;
    (parts.last()?.as_ref() == LOG_DIR).then(|| Path::from_iter(parts))
}

/// The version a listing offset names (`<dir>/<20 digits>`), when it is one.
fn offset_version(dir: &Path, offset: &Path) -> Option<u64> {
    let rest = offset
        .as_ref()
        .strip_prefix(dir.as_ref())?
        .strip_prefix('/')?;
    (rest.len() == 20 && rest.bytes().all(|b| b.is_ascii_digit()))
        .then(|| rest.parse().ok())
        .flatten()
}

/// The commit version of a log entry (`<20 digits>.json`).
fn commit_version(location: &Path) -> Option<u64> {
    match LogFile::of(location.filename()?)? {
        (version, LogFile::Commit) => Some(version),
        _ => None,
    }
}

fn commit_path(dir: &Path, version: u64) -> Path {
    Path::from(format!("{dir}/{version:020}.json"))
}

impl State {
    /// Where to probe from (and the listing's generation) when the log's known listing can answer
    /// a listing from `offset`, or `None` when a real listing is due.
    fn usable(&self, dir: &Path, offset: &Path) -> Option<(u64, u64)> {
        let known = self.logs.get(dir)?;
        (known.from <= *offset
            && known.listed_at.elapsed() < RELIST_AFTER
            && known.entries.len() < MAX_ENTRIES)
            .then_some((known.next, known.generation))
    }

    /// What a file of a log going away (a delete, a read finding it gone) makes stale.
    fn forget(&mut self, location: &Path) {
        if let Some(dir) = log_dir_of(location) {
            self.logs.remove(&dir);
            self.bodies.retain(|f| f.meta.location != *location);
        }
    }

    /// Keeps a probe's body for the reads that follow, within [`MAX_KEPT_BYTES`].
    fn keep(&mut self, fetched: Fetched) {
        let size = |f: &Fetched| f.body.as_ref().map_or(0, Bytes::len);
        if fetched.body.is_none() {
            return;
        }
        let mut total: usize = self.bodies.iter().map(size).sum::<usize>() + size(&fetched);
        while total > MAX_KEPT_BYTES {
            match self.bodies.pop_front() {
                Some(old) => total -= size(&old),
                None => break,
            }
        }
        self.bodies.push_back(fetched);
    }
}

fn locked(state: &Mutex<State>) -> object_store::Result<std::sync::MutexGuard<'_, State>> {
    state.lock().map_err(|_| object_store::Error::Generic {
        store: "log listings",
        source: "poisoned lock".into(),
    })
}

impl LogListings {
    /// Lists `dir` from `offset`: from what is known plus probes, or for real.
    async fn list_log(
        inner: StoreRef,
        state: Arc<Mutex<State>>,
        absent_by_head: bool,
        dir: Path,
        offset: Path,
        first: u64,
    ) -> object_store::Result<Vec<ObjectMeta>> {
        let (plan, unhinted) = {
            let mut s = locked(&state)?;
            let unhinted = s.unhinted.remove(&dir);
            (s.usable(&dir, &offset), unhinted)
        };
        if let Some((next, generation)) = plan {
            let followed = Self::follow(&inner, &state, &dir, &offset, next, generation).await?;
            if let Some(answer) = followed {
                return Ok(answer);
            }
        } else if first == 0 && unhinted && absent_by_head {
            // A log listed from its start right after its checkpoint hint was found missing (an
            // open): a table without version 0 then does not exist yet, which a HEAD tells for a
            // tenth of a LIST's price (an absent quarantine table is opened on every bronze step).
            // Other listings from 0 (a change feed) are real: a cleaned log has no `0.json` either.
            match inner.head(&commit_path(&dir, 0)).await {
                Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
        let listed: Vec<ObjectMeta> = inner
            .list_with_offset(Some(&dir), &offset)
            .try_collect()
            .await?;
        let next = listed
            .iter()
            .filter_map(|m| commit_version(&m.location))
            .max()
            .map_or(first, |v| v + 1)
            .max(first);
        // Kept: the log's own versioned files (what the kernel reads), not `_sidecars/` and the like.
        let entries = listed
            .iter()
            .filter(|m| {
                log_dir_of(&m.location).as_ref() == Some(&dir)
                    && m.location
                        .filename()
                        .is_some_and(|f| f.starts_with(|c: char| c.is_ascii_digit()))
            })
            .map(|m| (m.location.clone(), m.clone()))
            .collect();
        tracing::debug!(log = %dir, entries = listed.len(), "log listed");
        let mut s = locked(&state)?;
        s.stats.listed += 1;
        s.generation += 1;
        let generation = s.generation;
        s.logs.insert(
            dir,
            Known {
                from: offset,
                listed_at: Instant::now(),
                entries,
                next,
                generation,
            },
        );
        Ok(listed)
    }

    /// The known listing of `dir` above `offset` with the commits from `next` on, found by name;
    /// `None` when a real listing is due after all (too far behind, or the listing changed while
    /// probing: a delete forgot it, or another task listed for real).
    async fn follow(
        inner: &StoreRef,
        state: &Mutex<State>,
        dir: &Path,
        offset: &Path,
        mut next: u64,
        generation: u64,
    ) -> object_store::Result<Option<Vec<ObjectMeta>>> {
        // Commits are contiguous: the first missing version ends the log.
        let mut found = Vec::new();
        loop {
            if found.len() as u64 >= MAX_PROBES {
                return Ok(None);
            }
            // A GET, not a HEAD (the same price): whoever asked reads the commit next.
            match inner.get(&commit_path(dir, next)).await {
                Ok(got) => {
                    let (meta, attributes) = (got.meta.clone(), got.attributes.clone());
                    let small = meta.size <= MAX_KEPT_BYTES as u64;
                    let body = if small {
                        Some(got.bytes().await?)
                    } else {
                        None
                    };
                    found.push(Fetched {
                        meta,
                        attributes,
                        body,
                    });
                    next += 1;
                }
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        let mut s = locked(state)?;
        s.stats.probed += found.len() as u64 + 1;
        let metas: Vec<ObjectMeta> = found.iter().map(|f| f.meta.clone()).collect();
        for fetched in found {
            s.keep(fetched);
        }
        let Some(known) = s.logs.get_mut(dir).filter(|k| k.generation == generation) else {
            return Ok(None);
        };
        known.next = known.next.max(next);
        for meta in metas {
            known.entries.insert(meta.location.clone(), meta);
        }
        let answer = known
            .entries
            .range((Bound::Excluded(offset.clone()), Bound::Unbounded))
            .map(|(_, m)| m.clone())
            .collect();
        s.stats.answered += 1;
        Ok(Some(answer))
    }
}

impl fmt::Display for LogListings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogListings({})", self.inner)
    }
}

impl fmt::Debug for LogListings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogListings({:?})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for LogListings {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let whole = options.range.is_none() && !options.head;
        let plain = whole
            && options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none();
        if plain {
            if let Some(kept) = self.kept(location) {
                return Ok(kept);
            }
        }
        let got = self.inner.get_opts(location, options).await;
        match got {
            Err(object_store::Error::NotFound { .. }) => {
                if location.filename() == Some(LAST_CHECKPOINT) {
                    // No checkpoint yet: nothing known goes stale, but an open may follow.
                    if let (Some(dir), Ok(mut state)) = (log_dir_of(location), self.state.lock()) {
                        state.unhinted.insert(dir);
                    }
                } else {
                    self.forget(location);
                }
                got
            }
            Ok(result) if whole && location.filename() == Some(LAST_CHECKPOINT) => {
                self.check_hint(location, result).await
            }
            got => got,
        }
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let got = self.inner.get_ranges(location, ranges).await;
        if matches!(got, Err(object_store::Error::NotFound { .. })) {
            self.forget(location);
        }
        got
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let state = self.state.clone();
        let forget = move |p: &Path| {
            if let Ok(mut s) = state.lock() {
                s.forget(p);
            }
        };
        let forget_too = forget.clone();
        // Forgotten before the delete (a listing racing it relists) and after (one that ran meanwhile).
        let inspected = locations.inspect_ok(move |p| forget(p));
        self.inner
            .delete_stream(inspected.boxed())
            .inspect_ok(move |p| forget_too(p))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let log = prefix
            .filter(|p| p.filename() == Some(LOG_DIR))
            .and_then(|dir| Some((dir.clone(), offset_version(dir, offset)?)));
        let Some((dir, first)) = log else {
            return self.inner.list_with_offset(prefix, offset);
        };
        let listed = Self::list_log(
            self.inner.clone(),
            self.state.clone(),
            self.absent_by_head,
            dir,
            offset.clone(),
            first,
        );
        stream::once(listed)
            .map_ok(|metas| stream::iter(metas.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::local::LocalFileSystem;

    async fn put(store: &dyn ObjectStore, path: &str) {
        store
            .put(&Path::from(path), PutPayload::from_static(b"{}"))
            .await
            .unwrap();
    }

    async fn names(store: &LogListings, offset: &str) -> Vec<String> {
        let mut names: Vec<String> = store
            .list_with_offset(Some(&Path::from("t/_delta_log")), &Path::from(offset))
            .map_ok(|m| m.location.filename().unwrap_or_default().to_string())
            .try_filter(|n| std::future::ready(n.starts_with(|c: char| c.is_ascii_digit())))
            .try_collect()
            .await
            .unwrap();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_known_log_is_listed_once_and_then_followed_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let fs: StoreRef = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let store = LogListings::new(fs.clone());
        let v = |n: u64| format!("t/_delta_log/{n:020}");
        for n in 0..3 {
            put(fs.as_ref(), &format!("{}.json", v(n))).await;
        }
        put(fs.as_ref(), &format!("{}.checkpoint.parquet", v(2))).await;
        put(fs.as_ref(), "t/part-0.parquet").await;

        let first = names(&store, &v(1)).await;
        assert_eq!(
            first,
            [
                "00000000000000000001.json",
                "00000000000000000002.checkpoint.parquet",
                "00000000000000000002.json"
            ]
        );
        assert_eq!(store.stats().listed, 1);

        // Another writer commits twice: found by name, with no second LIST.
        put(fs.as_ref(), &format!("{}.json", v(3))).await;
        put(fs.as_ref(), &format!("{}.json", v(4))).await;
        let second = names(&store, &v(2)).await;
        assert_eq!(
            second,
            [
                "00000000000000000002.checkpoint.parquet",
                "00000000000000000002.json",
                "00000000000000000003.json",
                "00000000000000000004.json"
            ]
        );
        let stats = store.stats();
        assert_eq!((stats.listed, stats.answered), (1, 1));
        assert_eq!(stats.probed, 3, "v3, v4 found, v5 missing");
        // The commits found are read next: from what the probe fetched, byte for byte.
        let v3 = Path::from(format!("{}.json", v(3)));
        assert_eq!(
            &store.get(&v3).await.unwrap().bytes().await.unwrap()[..],
            b"{}"
        );
        assert_eq!(store.stats().served, 1);
        let ranged = store.get_range(&v3, 0..1).await.unwrap();
        assert_eq!(&ranged[..], b"{");
        assert_eq!(store.stats().served, 1, "a range is read from the store");

        // An offset below what was listed, or a deletion in the log: listed for real again.
        assert_eq!(names(&store, &v(0)).await.len(), 6);
        assert_eq!(store.stats().listed, 2);
        let gone: Vec<_> = store
            .delete_stream(stream::iter([Ok(Path::from(format!("{}.json", v(0))))]).boxed())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(names(&store, &v(0)).await.len(), 5);
        assert_eq!(store.stats().listed, 3);
        // A checkpoint hint naming a checkpoint the known listing lacks (another writer's): the
        // reader's next listing is real, so it holds that checkpoint.
        let hint = Path::from("t/_delta_log/_last_checkpoint");
        put(fs.as_ref(), &format!("{}.checkpoint.parquet", v(4))).await;
        fs.put(&hint, PutPayload::from_static(br#"{"version":2,"size":3}"#))
            .await
            .unwrap();
        store.get(&hint).await.unwrap().bytes().await.unwrap();
        names(&store, &v(2)).await;
        assert_eq!(store.stats().listed, 3, "checkpoint 2 was known");
        fs.put(&hint, PutPayload::from_static(br#"{"version":4,"size":3}"#))
            .await
            .unwrap();
        let read = store.get(&hint).await.unwrap().bytes().await.unwrap();
        assert_eq!(
            &read[..],
            br#"{"version":4,"size":3}"#,
            "passed on unchanged"
        );
        assert!(names(&store, &v(2))
            .await
            .contains(&"00000000000000000004.checkpoint.parquet".into()));
        assert_eq!(store.stats().listed, 4);
        // An absent table (no hint, no version 0): one HEAD, no LIST, nothing remembered.
        let no_hint = Path::from("u/_delta_log/_last_checkpoint");
        assert!(store.get(&no_hint).await.is_err());
        let absent: Vec<ObjectMeta> = store
            .list_with_offset(
                Some(&Path::from("u/_delta_log")),
                &Path::from(format!("u/_delta_log/{:020}", 0)),
            )
            .try_collect()
            .await
            .unwrap();
        assert!(absent.is_empty());
        assert_eq!(store.stats().listed, 4);
        // A multi-part checkpoint counts as seen only with every part listed.
        for part in 1..=2 {
            let name = format!("{}.checkpoint.{part:010}.0000000002.parquet", v(6));
            put(fs.as_ref(), &name).await;
        }
        put(fs.as_ref(), &format!("{}.json", v(5))).await;
        put(fs.as_ref(), &format!("{}.json", v(6))).await;
        names(&store, &v(2)).await;
        let listed = store.stats().listed;
        fs.put(
            &hint,
            PutPayload::from_static(br#"{"version":6,"size":3,"parts":2}"#),
        )
        .await
        .unwrap();
        store.get(&hint).await.unwrap().bytes().await.unwrap();
        let after_hint = names(&store, &v(2)).await;
        assert_eq!(after_hint.len(), 9, "{after_hint:?}");
        assert_eq!(store.stats().listed, listed + 1, "parts unseen: listed");
        store.get(&hint).await.unwrap().bytes().await.unwrap();
        names(&store, &v(2)).await;
        assert_eq!(
            store.stats().listed,
            listed + 1,
            "both parts held: answered"
        );
        // Far behind (more commits than probes are worth): listed instead.
        for n in 7..7 + MAX_PROBES + 1 {
            put(fs.as_ref(), &format!("{}.json", v(n))).await;
        }
        assert_eq!(
            names(&store, &v(2)).await.len(),
            9 + MAX_PROBES as usize + 1
        );
        assert_eq!(store.stats().listed, listed + 2);
        // Other prefixes are never answered from memory.
        let all: Vec<_> = store
            .list(Some(&Path::from("t")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(all.len(), 45);
    }
}
