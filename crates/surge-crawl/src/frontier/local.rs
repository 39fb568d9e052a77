//! The crawl-directory frontier: one process, state in a directory,
//! safe against `kill -9` at any instant.
//!
//! Files (all append-only, one JSON document per line):
//!
//! - `queue.jsonl`: every URL ever offered, once ([`FrontierEntry`]).
//! - `pages.jsonl`: every record stored, once ([`PageRecord`]).
//! - `crawl.json`: the [`CrawlConfig`] (written by `surge crawl`, read by
//!   `--resume`).
//! - `lock`: held (`flock`) while a process has the directory open.
//! - `tmp/`: the seen-sets' spill files (scratch).
//!
//! The order of writes is what makes a kill harmless. [`Frontier::complete`]
//! appends the page's new outlinks to `queue.jsonl` *before* the page's
//! record goes to `pages.jsonl`, each in one `write(2)`: a process killed
//! between the two has journaled links of a page that is not done, and the
//! page is fetched again on resume (its links dedup). Once the record line
//! is in `pages.jsonl` the page is done for good. On open, a torn last line
//! of either file (a kill mid-`write`) is cut off, the done set is rebuilt
//! from `pages.jsonl`, and the queue from `queue.jsonl` minus the done URLs:
//! no written page is fetched again and no queued page is lost. Leases live
//! in memory only (they die with the process, so everything not done is
//! queued again).
//!
//! The data reaches the kernel at once (it survives the process); it is
//! `fsync`ed on [`LocalFrontier::sync`] (the engine calls it at the end of a
//! run), not per page: a power cut can lose the last pages written.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::CrawlConfig;
use crate::error::FrontierError;
use crate::frontier::{Frontier, FrontierEntry, FrontierStats, Lease};
use crate::record::PageRecord;
use crate::seen::{DEFAULT_THRESHOLD, SeenSet};
use crate::url_norm::fingerprint_str;

/// The queue journal's file name.
pub const QUEUE_FILE: &str = "queue.jsonl";
/// The records' file name.
pub const PAGES_FILE: &str = "pages.jsonl";
/// The config's file name.
pub const CONFIG_FILE: &str = "crawl.json";

/// The local frontier.
#[derive(Debug)]
pub struct LocalFrontier {
    dir: PathBuf,
    max_pages: Option<u64>,
    state: Box<Mutex<State>>,
    _lock: File,
}

#[derive(Debug)]
struct State {
    seen: SeenSet,
    done: SeenSet,
    done_count: u64,
    queues: BTreeMap<u32, VecDeque<FrontierEntry>>,
    queued: usize,
    delayed: Vec<(Instant, FrontierEntry)>,
    leases: HashMap<u64, (FrontierEntry, Instant)>,
    next_token: u64,
    journal: File,
    pages: File,
    buf: Vec<u8>,
}

#[derive(Deserialize)]
struct UrlOnly {
    url: String,
}

impl LocalFrontier {
    /// Opens (creating, or resuming) the crawl directory `dir`, with
    /// `max_pages` as the page budget (records already in the directory
    /// count).
    ///
    /// # Errors
    /// [`FrontierError::Io`] when the files cannot be read or written,
    /// [`FrontierError::Backend`] when another process holds the directory,
    /// [`FrontierError::Corrupt`] for a line (other than a torn last one)
    /// that does not decode.
    pub fn open(dir: &Path, max_pages: Option<u64>) -> Result<LocalFrontier, FrontierError> {
        LocalFrontier::open_with_threshold(dir, max_pages, DEFAULT_THRESHOLD)
    }

    /// [`LocalFrontier::open`] with the seen-sets' in-memory threshold.
    ///
    /// # Errors
    /// As [`LocalFrontier::open`].
    pub fn open_with_threshold(
        dir: &Path,
        max_pages: Option<u64>,
        threshold: usize,
    ) -> Result<LocalFrontier, FrontierError> {
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(FrontierError::Backend(format!(
                    "the crawl directory {} is in use by another process",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        let tmp = dir.join("tmp");
        let mut done = SeenSet::new(&tmp.join("done"), threshold)?;
        let mut seen = SeenSet::new(&tmp.join("seen"), threshold)?;
        let mut done_count = 0;
        let pages = open_log(&dir.join(PAGES_FILE), |line| {
            let r: UrlOnly = serde_json::from_slice(line)?;
            if done.insert(fingerprint_str(&r.url))? {
                done_count += 1;
            }
            Ok(())
        })?;
        let mut queues: BTreeMap<u32, VecDeque<FrontierEntry>> = BTreeMap::new();
        let mut queued = 0;
        let journal = open_log(&dir.join(QUEUE_FILE), |line| {
            let e: FrontierEntry = serde_json::from_slice(line)?;
            let fp = fingerprint_str(&e.url);
            if seen.insert(fp)? && !done.contains(fp)? {
                queues.entry(e.depth).or_default().push_back(e);
                queued += 1;
            }
            Ok(())
        })?;
        if done_count > 0 || queued > 0 {
            tracing::info!(dir = %dir.display(), done = done_count, queued, "resuming crawl directory");
        }
        Ok(LocalFrontier {
            dir: dir.to_owned(),
            max_pages,
            state: Box::new(Mutex::new(State {
                seen,
                done,
                done_count,
                queues,
                queued,
                delayed: Vec::new(),
                leases: HashMap::new(),
                next_token: 0,
                journal,
                pages,
                buf: Vec::with_capacity(64 * 1024),
            })),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The page budget.
    pub fn max_pages(&self) -> Option<u64> {
        self.max_pages
    }

    /// Writes `config` to `dir/crawl.json` (atomically: temp file + rename).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save_config(dir: &Path, config: &CrawlConfig) -> Result<(), FrontierError> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("crawl.json.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(config)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(CONFIG_FILE))?;
        Ok(())
    }

    /// Reads `dir/crawl.json`.
    ///
    /// # Errors
    /// [`FrontierError::NotFound`] when `dir` is not a crawl directory.
    pub fn load_config(dir: &Path) -> Result<CrawlConfig, FrontierError> {
        let path = dir.join(CONFIG_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            FrontierError::NotFound(format!(
                "{} is not a crawl directory ({}: {e})",
                dir.display(),
                path.display()
            ))
        })?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// `fsync`s the journal and the records.
    ///
    /// # Errors
    /// The files cannot be synced.
    pub fn sync(&self) -> Result<(), FrontierError> {
        let s = self.state();
        s.journal.sync_data()?;
        s.pages.sync_data()?;
        Ok(())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn token(&self, s: &State, lease: &Lease) -> Result<u64, FrontierError> {
        match lease.token.parse::<u64>() {
            Ok(t) if t >= 1 && t <= s.next_token => Ok(t),
            _ => Err(FrontierError::UnknownLease(lease.token.clone())),
        }
    }
}

/// Opens `path` for appending after replaying its complete lines through
/// `each`; a torn last line (no newline) is cut off.
fn open_log(
    path: &Path,
    mut each: impl FnMut(&[u8]) -> Result<(), FrontierError>,
) -> Result<File, FrontierError> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    let mut reader = BufReader::with_capacity(1 << 16, &file);
    let mut line = Vec::new();
    let mut good: u64 = 0;
    let mut torn = false;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            torn = true;
            break;
        }
        let body = &line[..line.len() - 1];
        if !body.iter().all(u8::is_ascii_whitespace) {
            each(body).map_err(|e| match e {
                FrontierError::Corrupt(m) => {
                    FrontierError::Corrupt(format!("{} at byte {good}: {m}", path.display()))
                }
                other => other,
            })?;
        }
        good += n as u64;
    }
    drop(reader);
    if torn {
        tracing::warn!(file = %path.display(), at = good, "cutting off a torn last line");
        file.set_len(good)?;
    }
    file.seek(SeekFrom::Start(good))?;
    Ok(file)
}

impl State {
    fn push(&mut self, e: FrontierEntry) {
        self.queues.entry(e.depth).or_default().push_back(e);
        self.queued += 1;
    }

    /// Expired leases and ready delayed entries back to the queues.
    fn reclaim(&mut self, now: Instant) {
        if self.leases.values().any(|(_, d)| *d <= now) {
            let expired: Vec<u64> = self
                .leases
                .iter()
                .filter(|(_, (_, d))| *d <= now)
                .map(|(t, _)| *t)
                .collect();
            for t in expired {
                if let Some((e, _)) = self.leases.remove(&t) {
                    self.push(e);
                }
            }
        }
        if self.delayed.iter().any(|(at, _)| *at <= now) {
            let delayed = std::mem::take(&mut self.delayed);
            for (at, e) in delayed {
                if at <= now {
                    self.push(e);
                } else {
                    self.delayed.push((at, e));
                }
            }
        }
    }

    /// Journals and queues the entries never seen; how many were new.
    fn offer(&mut self, entries: Vec<FrontierEntry>) -> Result<Vec<FrontierEntry>, FrontierError> {
        let mut new = Vec::new();
        self.buf.clear();
        for e in entries {
            if self.seen.insert(fingerprint_str(&e.url))? {
                serde_json::to_writer(&mut self.buf, &e)?;
                self.buf.push(b'\n');
                new.push(e);
            }
        }
        if !self.buf.is_empty() {
            self.journal.write_all(&self.buf)?;
        }
        Ok(new)
    }

    fn budget_left(&self, max_pages: Option<u64>) -> u64 {
        match max_pages {
            Some(m) => m.saturating_sub(self.done_count + self.leases.len() as u64),
            None => u64::MAX,
        }
    }
}

impl Frontier for LocalFrontier {
    async fn offer(&self, entries: Vec<FrontierEntry>) -> Result<u64, FrontierError> {
        let mut s = self.state();
        let new = s.offer(entries)?;
        let n = new.len() as u64;
        for e in new {
            s.push(e);
        }
        Ok(n)
    }

    async fn lease(&self, n: usize, ttl: Duration) -> Result<Vec<Lease>, FrontierError> {
        let now = Instant::now();
        let mut s = self.state();
        s.reclaim(now);
        let want = (n as u64).min(s.budget_left(self.max_pages)) as usize;
        let mut out = Vec::with_capacity(want);
        while out.len() < want {
            let Some(mut first) = s.queues.first_entry() else {
                break;
            };
            let Some(e) = first.get_mut().pop_front() else {
                first.remove();
                continue;
            };
            if first.get().is_empty() {
                first.remove();
            }
            s.queued -= 1;
            if s.done.contains(fingerprint_str(&e.url))? {
                continue; // completed through a stale lease
            }
            s.next_token += 1;
            let token = s.next_token;
            s.leases.insert(token, (e.clone(), now + ttl));
            out.push(Lease {
                entry: e,
                token: token.to_string(),
            });
        }
        Ok(out)
    }

    async fn complete(
        &self,
        lease: &Lease,
        record: &PageRecord,
        outlinks: Vec<FrontierEntry>,
    ) -> Result<bool, FrontierError> {
        let mut s = self.state();
        let token = self.token(&s, lease)?;
        s.leases.remove(&token);
        let fp = fingerprint_str(&lease.entry.url);
        if s.done.contains(fp)? || self.max_pages.is_some_and(|m| s.done_count >= m) {
            return Ok(false);
        }
        // Outlinks first, then the record: see the module documentation.
        let new = s.offer(outlinks)?;
        for e in new {
            s.push(e);
        }
        s.buf.clear();
        serde_json::to_writer(&mut s.buf, record)?;
        s.buf.push(b'\n');
        let State { pages, buf, .. } = &mut *s;
        pages.write_all(buf)?;
        s.done.insert(fp)?;
        s.done_count += 1;
        Ok(true)
    }

    async fn release(&self, lease: &Lease, delay: Duration) -> Result<(), FrontierError> {
        let mut s = self.state();
        let token = self.token(&s, lease)?;
        if let Some((e, _)) = s.leases.remove(&token) {
            if delay.is_zero() {
                s.push(e);
            } else {
                s.delayed.push((Instant::now() + delay, e));
            }
        }
        Ok(())
    }

    async fn extend(&self, leases: &[Lease], ttl: Duration) -> Result<(), FrontierError> {
        let deadline = Instant::now() + ttl;
        let mut s = self.state();
        for l in leases {
            if let Ok(t) = l.token.parse::<u64>()
                && let Some((_, d)) = s.leases.get_mut(&t)
            {
                *d = deadline;
            }
        }
        Ok(())
    }

    async fn stats(&self) -> Result<FrontierStats, FrontierError> {
        let mut s = self.state();
        s.reclaim(Instant::now());
        Ok(FrontierStats {
            queued: (s.queued + s.delayed.len()) as u64,
            leased: s.leases.len() as u64,
            done: s.done_count,
            seen: s.seen.len(),
        })
    }

    async fn is_finished(&self) -> Result<bool, FrontierError> {
        let mut s = self.state();
        s.reclaim(Instant::now());
        if !s.leases.is_empty() {
            return Ok(false);
        }
        let budget_done = self.max_pages.is_some_and(|m| s.done_count >= m);
        Ok(budget_done || (s.queued == 0 && s.delayed.is_empty()))
    }
}
