//! What the console server counts, shared with the metrics endpoint (atomics: the server's
//! thread writes, scrapes read).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the console over Ethernet.
#[derive(Debug, Default)]
pub struct CecCounters {
    /// Frames taken (discover, handshake, data, acks, resets of known sessions).
    pub accepted: AtomicU64,
    /// Frames that do not parse, or come from a multicast or our own address.
    pub malformed: AtomicU64,
    /// Discovers and connects from hosts not on the allow list.
    pub refused_host: AtomicU64,
    /// Connects refused because every session slot was taken.
    pub sessions_full: AtomicU64,
    /// Frames for a session that does not exist.
    pub no_session: AtomicU64,
    /// Sessions opened.
    pub sessions_opened: AtomicU64,
    /// Sessions dropped because the client stopped acknowledging.
    pub sessions_expired: AtomicU64,
    /// Data frames sent again.
    pub resends: AtomicU64,
    /// Command lines run.
    pub commands: AtomicU64,
    /// Sessions now.
    pub sessions: AtomicU64,
}

/// A copy of the counters for one scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CecSample {
    /// See [`CecCounters::accepted`].
    pub accepted: u64,
    /// See [`CecCounters::malformed`].
    pub malformed: u64,
    /// See [`CecCounters::refused_host`].
    pub refused_host: u64,
    /// See [`CecCounters::sessions_full`].
    pub sessions_full: u64,
    /// See [`CecCounters::no_session`].
    pub no_session: u64,
    /// See [`CecCounters::sessions_opened`].
    pub sessions_opened: u64,
    /// See [`CecCounters::sessions_expired`].
    pub sessions_expired: u64,
    /// See [`CecCounters::resends`].
    pub resends: u64,
    /// See [`CecCounters::commands`].
    pub commands: u64,
    /// See [`CecCounters::sessions`].
    pub sessions: u64,
}

impl CecCounters {
    /// Reads every counter.
    pub fn sample(&self) -> CecSample {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CecSample {
            accepted: r(&self.accepted),
            malformed: r(&self.malformed),
            refused_host: r(&self.refused_host),
            sessions_full: r(&self.sessions_full),
            no_session: r(&self.no_session),
            sessions_opened: r(&self.sessions_opened),
            sessions_expired: r(&self.sessions_expired),
            resends: r(&self.resends),
            commands: r(&self.commands),
            sessions: r(&self.sessions),
        }
    }
}
