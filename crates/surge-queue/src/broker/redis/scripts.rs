//! The Lua scripts: each is `lua/prelude.lua` (shared helpers, the clock,
//! the key prefix) followed by one operation's body. Invoked with EVALSHA;
//! `redis::Script` loads a script again when the server answers NOSCRIPT
//! (after a restart or SCRIPT FLUSH).

use std::sync::LazyLock;

use ::redis::Script;

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// One script per atomic operation.
pub(super) struct Scripts {
    pub(super) enqueue: Script,
    pub(super) chord: Script,
    pub(super) claim: Script,
    pub(super) complete: Script,
    pub(super) progress: Script,
    pub(super) register: Script,
    pub(super) heartbeat: Script,
    pub(super) deregister: Script,
    pub(super) rescue: Script,
    pub(super) list: Script,
    pub(super) cancel: Script,
    pub(super) retry: Script,
    pub(super) prune: Script,
    pub(super) fire_schedule: Script,
    pub(super) rate: Script,
}

impl Scripts {
    /// Every script, to load them all at connect time (so that a Lua error
    /// shows there, not at first use).
    pub(super) fn all(&self) -> [&Script; 15] {
        [
            &self.enqueue,
            &self.chord,
            &self.claim,
            &self.complete,
            &self.progress,
            &self.register,
            &self.heartbeat,
            &self.deregister,
            &self.rescue,
            &self.list,
            &self.cancel,
            &self.retry,
            &self.prune,
            &self.fire_schedule,
            &self.rate,
        ]
    }
}

/// The scripts, built once per process.
pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let script = |body: &str| Script::new(&[PRELUDE, body].concat());
    Scripts {
        enqueue: script(include_str!("lua/enqueue.lua")),
        chord: script(include_str!("lua/chord.lua")),
        claim: script(include_str!("lua/claim.lua")),
        complete: script(include_str!("lua/complete.lua")),
        progress: script(include_str!("lua/progress.lua")),
        register: script(include_str!("lua/register.lua")),
        heartbeat: script(include_str!("lua/heartbeat.lua")),
        deregister: script(include_str!("lua/deregister.lua")),
        rescue: script(include_str!("lua/rescue.lua")),
        list: script(include_str!("lua/list.lua")),
        cancel: script(include_str!("lua/cancel.lua")),
        retry: script(include_str!("lua/retry.lua")),
        prune: script(include_str!("lua/prune.lua")),
        fire_schedule: script(include_str!("lua/fire_schedule.lua")),
        rate: script(include_str!("lua/rate.lua")),
    }
});
