//! The Redis frontier: a crawl's frontier, seen-set and records in Redis,
//! every operation one Lua script (atomic, one round trip, Redis `TIME`
//! the one clock).
//!
//! # Layout
//! `N` is the namespace (`SURGE_BROKER_NAMESPACE`, default `surge`), `C` is
//! `N:crawl:{id}:` with the crawl's id as 32 hex digits; fingerprints
//! (`fp`) are 16 hex digits.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `N:crawl:index` | sorted set | every crawl id (score 0: ordered by id, so by creation) |
//! | `C meta` | hash | `config` (JSON), `created_at`, `max_pages`, `ended_at`, `state`, `seq` (entry counter) |
//! | `C seen` | set | fingerprints of every URL ever offered (no URLs) |
//! | `C entry` | hash | fp → `depth:score:url` of each URL waiting or leased |
//! | `C ready` | sorted set | fp of entries leasable now, score `depth·10¹² + seq` (breadth first) |
//! | `C delayed` | sorted set | fp of released entries, score: when leasable (ms) |
//! | `C leased` | sorted set | fp of leased entries, score: lease expiry (ms) |
//! | `C token` | hash | fp → nonce of the lease call that holds it |
//! | `C done` | set | fp of every URL whose record is stored |
//! | `C pages` | list | the records (JSON), in the order they were stored |
//!
//! # Guarantees
//! - Complete stores a record only if its fp is not in `done` (and the
//!   budget has room), and in the same script removes the entry and
//!   offers the outlinks: an entry never leaves without its outlinks, so
//!   "nothing in `ready`, `delayed` or `leased`" means finished.
//! - Lease first takes back expired leases and due delayed entries, then
//!   hands out at most `max_pages − records − leases` entries.
//! - Keys are computed inside the scripts: Redis Cluster works only if a
//!   namespace such as `{surge}` puts every key in one slot.

use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, Script, Value};
use uuid::Uuid;

use super::shared::{by_fingerprint, millis, parse_token, token};
use super::{Frontier, FrontierEntry, FrontierStats, Lease};
use crate::config::CrawlConfig;
use crate::crawls::{CrawlInfo, CrawlState};
use crate::error::FrontierError;
use crate::record::PageRecord;

/// Lua shared by the scripts: `b` (the crawl's key prefix), `now` (ms by
/// Redis' clock), `back(fp)` (an entry back into `ready` at its own score)
/// and `offer(from)` (ARGV from `from` on as fp, depth, url triples).
const PRELUDE: &str = r"
local b = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function back(fp)
  local e = redis.call('HGET', b .. 'entry', fp)
  if e then
    local score = string.match(e, '^[^:]*:([^:]*):')
    redis.call('ZADD', b .. 'ready', score, fp)
  end
end
local function offer(from)
  local added = 0
  for i = from, #ARGV, 3 do
    local fp = ARGV[i]
    if redis.call('SADD', b .. 'seen', fp) == 1 then
      local seq = redis.call('HINCRBY', b .. 'meta', 'seq', 1)
      local score = string.format('%.0f', tonumber(ARGV[i + 1]) * 1e12 + seq)
      redis.call('HSET', b .. 'entry', fp, ARGV[i + 1] .. ':' .. score .. ':' .. ARGV[i + 2])
      redis.call('ZADD', b .. 'ready', score, fp)
      added = added + 1
    end
  end
  return added
end
local function budget()
  local max = redis.call('HGET', b .. 'meta', 'max_pages')
  if max and max ~= '' then return tonumber(max) end
  return nil
end
";

const OFFER: &str = "return offer(2)";

/// ARGV: prefix, n, ttl ms, nonce. Returns fp, entry pairs.
const LEASE: &str = r"
local expired = redis.call('ZRANGEBYSCORE', b .. 'leased', '-inf', now, 'LIMIT', 0, 1000)
for _, fp in ipairs(expired) do
  redis.call('ZREM', b .. 'leased', fp)
  redis.call('HDEL', b .. 'token', fp)
  back(fp)
end
local due = redis.call('ZRANGEBYSCORE', b .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)
for _, fp in ipairs(due) do
  redis.call('ZREM', b .. 'delayed', fp)
  back(fp)
end
local room = tonumber(ARGV[2])
local max = budget()
if max then
  room = math.min(room, max - redis.call('LLEN', b .. 'pages') - redis.call('ZCARD', b .. 'leased'))
end
if room <= 0 then return {} end
local picked = redis.call('ZPOPMIN', b .. 'ready', room)
local out = {}
local expiry = now + tonumber(ARGV[3])
for i = 1, #picked, 2 do
  local fp = picked[i]
  redis.call('ZADD', b .. 'leased', expiry, fp)
  redis.call('HSET', b .. 'token', fp, ARGV[4])
  out[#out + 1] = fp
  out[#out + 1] = redis.call('HGET', b .. 'entry', fp)
end
return out
";

/// ARGV: prefix, fp, record, then the outlinks. 1 when stored.
const COMPLETE: &str = r"
local fp = ARGV[2]
if redis.call('SISMEMBER', b .. 'done', fp) == 1 then return 0 end
local max = budget()
if max and redis.call('LLEN', b .. 'pages') >= max then
  if redis.call('ZREM', b .. 'leased', fp) == 1 then
    redis.call('HDEL', b .. 'token', fp)
    back(fp)
  end
  return 0
end
redis.call('SADD', b .. 'done', fp)
redis.call('RPUSH', b .. 'pages', ARGV[3])
redis.call('ZREM', b .. 'ready', fp)
redis.call('ZREM', b .. 'delayed', fp)
redis.call('ZREM', b .. 'leased', fp)
redis.call('HDEL', b .. 'token', fp)
redis.call('HDEL', b .. 'entry', fp)
offer(4)
return 1
";

/// ARGV: prefix, fp, nonce, delay ms.
const RELEASE: &str = r"
local fp = ARGV[2]
if redis.call('HGET', b .. 'token', fp) ~= ARGV[3] then return 0 end
redis.call('ZREM', b .. 'leased', fp)
redis.call('HDEL', b .. 'token', fp)
local delay = tonumber(ARGV[4])
if delay <= 0 then back(fp) else redis.call('ZADD', b .. 'delayed', now + delay, fp) end
return 1
";

/// ARGV: prefix, ttl ms, then fp, nonce pairs.
const EXTEND: &str = r"
local n = 0
for i = 3, #ARGV, 2 do
  if redis.call('HGET', b .. 'token', ARGV[i]) == ARGV[i + 1] then
    n = n + redis.call('ZADD', b .. 'leased', 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[i])
  end
end
return n
";

/// ARGV: prefix. Returns queued, leased, done, seen, finished (0/1).
const STATS: &str = r"
local all = redis.call('ZCARD', b .. 'leased')
local live = redis.call('ZCOUNT', b .. 'leased', '(' .. now, '+inf')
local waiting = redis.call('ZCARD', b .. 'ready') + redis.call('ZCARD', b .. 'delayed')
local done = redis.call('LLEN', b .. 'pages')
local finished = 0
if waiting + all == 0 then finished = 1 end
local max = budget()
if max and done >= max and live == 0 then finished = 1 end
return {waiting + all - live, live, done, redis.call('SCARD', b .. 'seen'), finished}
";

/// ARGV: prefix, id, config, max pages ('' for none); KEYS: none. 1 when
/// created.
const CREATE: &str = r"
if redis.call('EXISTS', b .. 'meta') == 1 then return 0 end
redis.call('HSET', b .. 'meta', 'config', ARGV[3], 'max_pages', ARGV[4],
  'created_at', now, 'seq', 0)
redis.call('ZADD', ARGV[5], 0, ARGV[2])
return 1
";

/// ARGV: prefix, state. 1 when this call ended it.
const END: &str = r"
if redis.call('EXISTS', b .. 'meta') == 0 then return 0 end
if redis.call('HEXISTS', b .. 'meta', 'ended_at') == 1 then return 0 end
redis.call('HSET', b .. 'meta', 'ended_at', now, 'state', ARGV[2])
return 1
";

/// The compiled scripts.
struct Scripts {
    offer: Script,
    lease: Script,
    complete: Script,
    release: Script,
    extend: Script,
    stats: Script,
    create: Script,
    end: Script,
}

impl Scripts {
    fn new() -> Scripts {
        let s = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            offer: s(OFFER),
            lease: s(LEASE),
            complete: s(COMPLETE),
            release: s(RELEASE),
            extend: s(EXTEND),
            stats: s(STATS),
            create: s(CREATE),
            end: s(END),
        }
    }
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(Scripts::new)
}

fn backend(e: redis::RedisError) -> FrontierError {
    FrontierError::Backend(format!("redis: {e}"))
}

/// The crawls stored under one Redis namespace. Cheap to clone.
#[derive(Clone)]
pub struct RedisCrawls {
    conn: ConnectionManager,
    /// `{namespace}:crawl:`.
    prefix: String,
}

impl std::fmt::Debug for RedisCrawls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCrawls")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// `u64` of a reply that is an integer or an integer string.
fn int(v: &Value) -> Result<u64, FrontierError> {
    u64::from_redis_value(v).map_err(|e| FrontierError::Corrupt(format!("redis reply: {e}")))
}

fn time_from_ms(ms: &str) -> Result<DateTime<Utc>, FrontierError> {
    ms.parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| FrontierError::Corrupt(format!("crawl time {ms:?}")))
}

impl RedisCrawls {
    /// Connects to the Redis at `url`; keys live under `{namespace}:crawl:`.
    ///
    /// # Errors
    /// [`FrontierError::Backend`] when Redis cannot be reached.
    pub async fn connect(url: &str, namespace: &str) -> Result<RedisCrawls, FrontierError> {
        let client = Client::open(url).map_err(backend)?;
        let timeout = Duration::from_secs(10);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(backend)?;
        Ok(RedisCrawls {
            conn,
            prefix: format!("{namespace}:crawl:"),
        })
    }

    fn base(&self, id: Uuid) -> String {
        format!("{}{}:", self.prefix, id.simple())
    }

    fn index(&self) -> String {
        format!("{}index", self.prefix)
    }

    /// Stores a new crawl; `false` (and nothing changed) when `id` exists.
    ///
    /// # Errors
    /// [`FrontierError::Backend`].
    pub async fn create(&self, id: Uuid, config: &CrawlConfig) -> Result<bool, FrontierError> {
        let text = serde_json::to_string(config)?;
        let max = config.max_pages.map(|m| m.to_string()).unwrap_or_default();
        let created: u64 = scripts()
            .create
            .prepare_invoke()
            .arg(self.base(id))
            .arg(id.simple().to_string())
            .arg(text)
            .arg(max)
            .arg(self.index())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(created == 1)
    }

    /// The frontier of crawl `id`.
    ///
    /// # Errors
    /// [`FrontierError::NotFound`] for an unknown id.
    pub async fn open(&self, id: Uuid) -> Result<RedisFrontier, FrontierError> {
        let base = self.base(id);
        let exists: bool = redis::cmd("EXISTS")
            .arg(format!("{base}meta"))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        if !exists {
            return Err(FrontierError::NotFound(id.to_string()));
        }
        Ok(RedisFrontier {
            conn: self.conn.clone(),
            base,
        })
    }

    /// Crawl `id`, if stored.
    ///
    /// # Errors
    /// [`FrontierError::Backend`], [`FrontierError::Corrupt`].
    pub async fn get(&self, id: Uuid) -> Result<Option<CrawlInfo>, FrontierError> {
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(format!("{}meta", self.base(id)))
            .arg(&["config", "created_at", "ended_at", "state"])
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        let [config, created, ended, state] = <[Option<String>; 4]>::try_from(fields)
            .map_err(|_| FrontierError::Corrupt("crawl meta reply".into()))?;
        let (Some(config), Some(created)) = (config, created) else {
            return Ok(None);
        };
        Ok(Some(CrawlInfo {
            id,
            config: serde_json::from_str(&config)?,
            created_at: time_from_ms(&created)?,
            ended_at: ended.as_deref().map(time_from_ms).transpose()?,
            state: match state.as_deref() {
                None => CrawlState::Running,
                Some(s) => CrawlState::parse(s)
                    .ok_or_else(|| FrontierError::Corrupt(format!("crawl state {s:?}")))?,
            },
        }))
    }

    /// Up to `limit` crawls, newest first, older than `before` if given.
    ///
    /// # Errors
    /// [`FrontierError::Backend`], [`FrontierError::Corrupt`].
    pub async fn list(
        &self,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<CrawlInfo>, FrontierError> {
        let max = before.map_or_else(|| "+".to_owned(), |b| format!("({}", b.simple()));
        let ids: Vec<String> = redis::cmd("ZREVRANGEBYLEX")
            .arg(self.index())
            .arg(max)
            .arg("-")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let id = Uuid::try_parse(&id)
                .map_err(|_| FrontierError::Corrupt(format!("crawl id {id:?}")))?;
            out.extend(self.get(id).await?);
        }
        Ok(out)
    }

    /// Marks crawl `id` ended in `state` (the first end counts); `false`
    /// when it was already ended or is unknown.
    ///
    /// # Errors
    /// [`FrontierError::Backend`].
    pub async fn end(&self, id: Uuid, state: CrawlState) -> Result<bool, FrontierError> {
        let ended: u64 = scripts()
            .end
            .prepare_invoke()
            .arg(self.base(id))
            .arg(state.as_str())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(ended == 1)
    }

    /// Up to `limit` stored records (JSON text) of crawl `id` after cursor
    /// `after` (0: from the start), in the order they were stored, each
    /// with the cursor that follows it.
    ///
    /// # Errors
    /// [`FrontierError::NotFound`] for an unknown crawl,
    /// [`FrontierError::Backend`].
    pub async fn pages(
        &self,
        id: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, FrontierError> {
        let frontier = self.open(id).await?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = i64::try_from(after).unwrap_or(i64::MAX);
        let stop = start.saturating_add(i64::try_from(limit).unwrap_or(i64::MAX) - 1);
        let records: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("{}pages", frontier.base))
            .arg(start)
            .arg(stop)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(records
            .into_iter()
            .zip(after + 1..)
            .map(|(r, cursor)| (cursor, r))
            .collect())
    }
}

/// One crawl's frontier in Redis (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct RedisFrontier {
    conn: ConnectionManager,
    /// `{namespace}:crawl:{id}:`.
    base: String,
}

impl std::fmt::Debug for RedisFrontier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFrontier")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn hex(fp: u64) -> String {
    format!("{fp:016x}")
}

/// Appends fp, depth, url triples to an invocation.
fn push_entries(
    inv: &mut redis::ScriptInvocation<'_>,
    entries: Vec<FrontierEntry>,
) -> Result<(), FrontierError> {
    for (fp, e) in by_fingerprint(entries) {
        inv.arg(hex(fp)).arg(e.depth).arg(e.url);
    }
    Ok(())
}

impl RedisFrontier {
    async fn run<T: FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, FrontierError> {
        inv.invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)
    }

    async fn counts(&self) -> Result<[u64; 5], FrontierError> {
        let mut inv = scripts().stats.prepare_invoke();
        inv.arg(&self.base);
        let v: Vec<Value> = self.run(&inv).await?;
        let mut out = [0u64; 5];
        if v.len() != out.len() {
            return Err(FrontierError::Corrupt("stats reply".into()));
        }
        for (o, v) in out.iter_mut().zip(&v) {
            *o = int(v)?;
        }
        Ok(out)
    }
}

impl Frontier for RedisFrontier {
    async fn offer(&self, entries: Vec<FrontierEntry>) -> Result<u64, FrontierError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut inv = scripts().offer.prepare_invoke();
        inv.arg(&self.base);
        push_entries(&mut inv, entries)?;
        self.run(&inv).await
    }

    async fn lease(&self, n: usize, ttl: Duration) -> Result<Vec<Lease>, FrontierError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let nonce = Uuid::new_v4().simple().to_string();
        let mut inv = scripts().lease.prepare_invoke();
        inv.arg(&self.base).arg(n).arg(millis(ttl)).arg(&nonce);
        let flat: Vec<String> = self.run(&inv).await?;
        let mut out = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks(2) {
            let [fp, entry] = pair else {
                return Err(FrontierError::Corrupt("lease reply".into()));
            };
            let bad = || FrontierError::Corrupt(format!("frontier entry {entry:?}"));
            let mut parts = entry.splitn(3, ':');
            let depth = parts.next().and_then(|d| d.parse().ok()).ok_or_else(bad)?;
            let url = parts.nth(1).ok_or_else(bad)?;
            let fp = u64::from_str_radix(fp, 16).map_err(|_| bad())?;
            out.push(Lease {
                entry: FrontierEntry {
                    url: url.to_owned(),
                    depth,
                },
                token: token(fp, &nonce),
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
        let (fp, _) = parse_token(lease)?;
        let mut inv = scripts().complete.prepare_invoke();
        inv.arg(&self.base)
            .arg(hex(fp))
            .arg(serde_json::to_string(record)?);
        push_entries(&mut inv, outlinks)?;
        let stored: u64 = self.run(&inv).await?;
        Ok(stored == 1)
    }

    async fn release(&self, lease: &Lease, delay: Duration) -> Result<(), FrontierError> {
        let (fp, nonce) = parse_token(lease)?;
        let mut inv = scripts().release.prepare_invoke();
        inv.arg(&self.base)
            .arg(hex(fp))
            .arg(nonce)
            .arg(millis(delay));
        let _: u64 = self.run(&inv).await?;
        Ok(())
    }

    async fn extend(&self, leases: &[Lease], ttl: Duration) -> Result<(), FrontierError> {
        if leases.is_empty() {
            return Ok(());
        }
        let mut inv = scripts().extend.prepare_invoke();
        inv.arg(&self.base).arg(millis(ttl));
        for lease in leases {
            let (fp, nonce) = parse_token(lease)?;
            inv.arg(hex(fp)).arg(nonce);
        }
        let _: u64 = self.run(&inv).await?;
        Ok(())
    }

    async fn stats(&self) -> Result<FrontierStats, FrontierError> {
        let [queued, leased, done, seen, _] = self.counts().await?;
        Ok(FrontierStats {
            queued,
            leased,
            done,
            seen,
        })
    }

    async fn is_finished(&self) -> Result<bool, FrontierError> {
        Ok(self.counts().await?[4] == 1)
    }
}
