//! The crawl-directory frontier (kill -9 safe). Skeleton: in memory for now.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::FrontierError;
use crate::frontier::{Frontier, FrontierEntry, FrontierStats, Lease};
use crate::record::PageRecord;

/// The local frontier.
#[derive(Debug, Default)]
pub struct LocalFrontier {
    state: Mutex<State>,
    max_pages: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    seen: HashSet<String>,
    queue: VecDeque<FrontierEntry>,
    leased: HashMap<String, FrontierEntry>,
    done: HashSet<String>,
    next: u64,
}

impl LocalFrontier {
    /// An in-memory frontier with an optional page budget.
    pub fn in_memory(max_pages: Option<u64>) -> LocalFrontier {
        LocalFrontier {
            state: Mutex::new(State::default()),
            max_pages,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Frontier for LocalFrontier {
    async fn offer(&self, entries: Vec<FrontierEntry>) -> Result<u64, FrontierError> {
        let mut s = self.state();
        let mut n = 0;
        for e in entries {
            if s.seen.insert(e.url.clone()) {
                s.queue.push_back(e);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn lease(&self, n: usize, _ttl: Duration) -> Result<Vec<Lease>, FrontierError> {
        let mut s = self.state();
        let room = match self.max_pages {
            Some(m) => m.saturating_sub(s.done.len() as u64 + s.leased.len() as u64) as usize,
            None => usize::MAX,
        };
        let mut out = Vec::new();
        while out.len() < n.min(room) {
            let Some(e) = s.queue.pop_front() else { break };
            s.next += 1;
            let token = s.next.to_string();
            s.leased.insert(token.clone(), e.clone());
            out.push(Lease { entry: e, token });
        }
        Ok(out)
    }

    async fn complete(
        &self,
        lease: &Lease,
        record: &PageRecord,
        outlinks: Vec<FrontierEntry>,
    ) -> Result<bool, FrontierError> {
        let stored = {
            let mut s = self.state();
            s.leased.remove(&lease.token);
            s.done.insert(record.url.clone())
        };
        self.offer(outlinks).await?;
        Ok(stored)
    }

    async fn release(&self, lease: &Lease, _delay: Duration) -> Result<(), FrontierError> {
        let mut s = self.state();
        if let Some(e) = s.leased.remove(&lease.token) {
            s.queue.push_back(e);
        }
        Ok(())
    }

    async fn extend(&self, _leases: &[Lease], _ttl: Duration) -> Result<(), FrontierError> {
        Ok(())
    }

    async fn stats(&self) -> Result<FrontierStats, FrontierError> {
        let s = self.state();
        Ok(FrontierStats {
            queued: s.queue.len() as u64,
            leased: s.leased.len() as u64,
            done: s.done.len() as u64,
            seen: s.seen.len() as u64,
        })
    }

    async fn is_finished(&self) -> Result<bool, FrontierError> {
        let s = self.state();
        let budget_done = self.max_pages.is_some_and(|m| s.done.len() as u64 >= m);
        Ok(s.leased.is_empty() && (s.queue.is_empty() || budget_done))
    }
}
