//! The console server over Ethernet: one thread with a console socket per AoE port, a
//! bounded table of sessions, and a second thread that runs their command lines on the
//! shelf (through the same admin channel as `ethershelf console`). Nothing here touches the
//! data path: its frames arrive on their own sockets and its commands queue like the
//! console's, at most one per session and a bounded number in all.

use super::counters::CecCounters;
use super::frame::{CecFrame, Kind, MAX_FRAME};
use super::guard::{Lockouts, LogBudget};
use super::session::{Action, Outgoing, Session, Texts, CHUNK};
use super::socket::{wait_readable, CecSocket};
use crate::wire::MacAddr;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the server looks at its timers when no frame arrives.
const TICK_MS: i32 = 50;
/// Frames taken from one socket per wake-up (the rest wait for the next round).
const RX_BURST: usize = 64;
/// When every session slot is taken, a session silent this long gives way to a new one.
const EVICT_IDLE: Duration = Duration::from_secs(300);
/// Same, for a session still at its password question.
const EVICT_UNAUTHENTICATED: Duration = Duration::from_secs(30);
/// A session whose client never finishes the handshake is dropped this long after init-a.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// init-b is sent again this often until the client's init-c (or data) arrives.
const INIT_B_RESEND: Duration = Duration::from_millis(500);
/// Sessions one host (MAC) may hold at once.
const SESSIONS_PER_HOST: usize = 2;
/// Session log lines per minute (a connect flood is summarised).
const LOG_LINES_PER_MINUTE: u32 = 30;

/// Runs one command line for a user name (`cec MAC`) and returns the console's answer.
pub type Runner = Box<dyn Fn(&str, &str) -> String + Send>;

/// What the server needs to know about its shelf.
pub struct CecSettings {
    /// Shelf number, first word of the offer.
    pub shelf: u16,
    /// The rest of the offer (a host or box name).
    pub name: String,
    /// Asked before the prompt.
    pub password: Option<String>,
    /// Hosts that may discover and connect (`None`: every host).
    pub allow: Option<BTreeSet<[u8; 6]>>,
    /// Sessions at once.
    pub max_sessions: usize,
}

/// Identifies a session: port, client MAC, client tag.
type Key = (usize, MacAddr, u8);
/// A command for the runner: the session (key and generation), the line, the user.
type Job = (Key, u64, String, String);

/// How a session ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client sent a reset: nothing to tell it.
    ByClient,
    /// The shelf ends it: a reset tells the client.
    ByShelf,
}

struct Server {
    sockets: Vec<CecSocket>,
    settings: CecSettings,
    texts: Texts,
    sessions: Vec<Session>,
    counters: Arc<CecCounters>,
    jobs: mpsc::SyncSender<Job>,
    frame: [u8; MAX_FRAME],
    generation: u64,
    lockouts: Lockouts,
    log: LogBudget,
    /// When init-b was last sent, per session generation (until the handshake completes).
    init_b: Vec<(u64, Instant)>,
}

/// Opens the console sockets on `interfaces` and serves them on a thread for the life of
/// the process. Ports whose socket cannot be opened are skipped with a warning.
pub fn start(
    interfaces: &[String],
    settings: CecSettings,
    runner: Runner,
    counters: Arc<CecCounters>,
) -> std::io::Result<()> {
    let mut sockets = Vec::new();
    for name in interfaces {
        match CecSocket::open(name) {
            Ok(s) => sockets.push(s),
            Err(e) => {
                tracing::warn!(port = %name, error = %e, "console over Ethernet not served on this port")
            }
        }
    }
    if sockets.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no port could take the console over Ethernet",
        ));
    }
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(settings.max_sessions.max(1));
    let (done_tx, done_rx) = mpsc::channel::<(Key, u64, String)>();
    std::thread::Builder::new()
        .name("cec-commands".into())
        .spawn(move || {
            for (key, generation, line, user) in job_rx {
                let answer = runner(&line, &user);
                if done_tx.send((key, generation, answer)).is_err() {
                    break;
                }
            }
        })?;
    let ports: Vec<String> = sockets.iter().map(|s| s.name().to_string()).collect();
    let now = Instant::now();
    let mut server = Server {
        texts: Texts {
            prompt: format!("ethershelf shelf {}> ", settings.shelf),
            banner: format!(
                "ethershelf shelf {} console ('help' lists commands, 'quit' leaves)\n",
                settings.shelf
            ),
            password: settings.password.clone(),
        },
        sockets,
        settings,
        sessions: Vec::new(),
        counters,
        jobs: job_tx,
        frame: [0; MAX_FRAME],
        generation: 0,
        lockouts: Lockouts::default(),
        log: LogBudget::new(LOG_LINES_PER_MINUTE, now),
        init_b: Vec::new(),
    };
    std::thread::Builder::new()
        .name("cec".into())
        .spawn(move || server.run(done_rx))?;
    tracing::info!(ports = ?ports, "console over Ethernet (CEC) ready");
    Ok(())
}

fn count(what: &AtomicU64) {
    what.fetch_add(1, Ordering::Relaxed);
}

impl Server {
    fn run(&mut self, answers: mpsc::Receiver<(Key, u64, String)>) {
        let offer = self.offer_text();
        for port in 0..self.sockets.len() {
            self.send(
                port,
                MacAddr::BROADCAST,
                Kind::Offer,
                0,
                0,
                offer.as_bytes(),
            );
        }
        let mut rx = [0u8; 2048];
        loop {
            let ready = wait_readable(&self.sockets, TICK_MS);
            for (port, is_ready) in ready.into_iter().enumerate() {
                if !is_ready {
                    continue;
                }
                for _ in 0..RX_BURST {
                    match self.sockets[port].recv(&mut rx) {
                        Ok(Some(n)) => self.frame_in(port, &rx[..n]),
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(port = self.sockets[port].name(), error = %e, "console receive failed");
                            break;
                        }
                    }
                }
            }
            loop {
                match answers.try_recv() {
                    Ok((key, generation, text)) => self.answer(key, generation, &text),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            self.timers();
        }
    }

    /// Logs a session event within the log budget.
    fn note(&mut self, host: MacAddr, what: &str) {
        match self.log.take(Instant::now()) {
            Ok(true) => tracing::info!(%host, "console over Ethernet: {what}"),
            Ok(false) => {}
            Err(n) => {
                tracing::warn!(suppressed = n, "console over Ethernet: {n} session log lines left out in the last minute (a flood?)");
                tracing::info!(%host, "console over Ethernet: {what}");
            }
        }
    }

    fn offer_text(&self) -> String {
        format!("{} {}", self.settings.shelf, self.settings.name)
    }

    fn allowed(&self, mac: MacAddr) -> bool {
        self.settings
            .allow
            .as_ref()
            .is_none_or(|set| set.contains(&mac.0))
    }

    fn find(&self, key: Key) -> Option<usize> {
        self.sessions
            .iter()
            .position(|s| (s.port, s.peer, s.tag) == key)
    }

    fn frame_in(&mut self, port: usize, bytes: &[u8]) {
        let Ok(f) = CecFrame::parse(bytes) else {
            count(&self.counters.malformed);
            return;
        };
        let ours = self.sockets[port].mac();
        if f.dst != ours && f.dst != MacAddr::BROADCAST {
            return;
        }
        if f.src.is_multicast() || f.src == ours {
            count(&self.counters.malformed);
            return;
        }
        let now = Instant::now();
        let key = (port, f.src, f.tag);
        match f.kind {
            Kind::Discover | Kind::InitA
                if !self.allowed(f.src) || self.lockouts.locked(f.src, now) =>
            {
                count(&self.counters.refused_host);
            }
            Kind::Discover => {
                count(&self.counters.accepted);
                let offer = self.offer_text();
                self.send(port, f.src, Kind::Offer, f.tag, 0, offer.as_bytes());
            }
            Kind::InitA => self.connect(key, now),
            Kind::InitC => match self.find(key) {
                Some(i) => {
                    count(&self.counters.accepted);
                    if !self.sessions[i].is_open() {
                        self.sessions[i].open(&self.texts, now);
                        let host = f.src;
                        self.note(host, "session opened");
                    }
                }
                None => count(&self.counters.no_session),
            },
            Kind::Data => match self.find(key) {
                Some(i) => {
                    count(&self.counters.accepted);
                    self.send(port, f.src, Kind::Ack, f.tag, f.seq, &[]);
                    self.keystrokes(i, f.seq, f.data, now);
                }
                None => count(&self.counters.no_session),
            },
            Kind::Ack => match self.find(key) {
                Some(i) => {
                    count(&self.counters.accepted);
                    self.sessions[i].acked(f.seq, now);
                }
                None => count(&self.counters.no_session),
            },
            Kind::Reset => match self.find(key) {
                Some(i) => {
                    count(&self.counters.accepted);
                    self.drop_session(i, "closed by the client", End::ByClient);
                }
                None => count(&self.counters.no_session),
            },
            // Another shelf's answers: not for a server.
            Kind::InitB | Kind::Offer => {}
        }
    }

    fn connect(&mut self, key: Key, now: Instant) {
        if let Some(i) = self.find(key) {
            // The client asks again (it missed our init-b, or it saw an offer and reconnects):
            // the session, its sequence numbers and its login stay; init-b goes out again.
            count(&self.counters.accepted);
            let generation = self.sessions[i].generation;
            self.init_b.retain(|(g, _)| *g != generation);
            self.init_b.push((generation, now));
            self.send(key.0, key.1, Kind::InitB, key.2, 0, &[]);
            return;
        }
        if self.sessions.iter().filter(|s| s.peer == key.1).count() >= SESSIONS_PER_HOST {
            count(&self.counters.sessions_full);
            return;
        }
        if self.sessions.len() >= self.settings.max_sessions {
            let idlest = self
                .sessions
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    let idle = now.duration_since(s.last_heard);
                    !s.is_running()
                        && (idle >= EVICT_IDLE
                            || (s.is_authenticating() && idle >= EVICT_UNAUTHENTICATED))
                })
                .min_by_key(|(_, s)| s.last_heard)
                .map(|(i, _)| i);
            match idlest {
                Some(i) => {
                    self.drop_session(i, "idle; its place went to a new session", End::ByShelf)
                }
                None => {
                    count(&self.counters.sessions_full);
                    self.note(key.1, "session refused: every session slot is taken");
                    return;
                }
            }
        }
        count(&self.counters.accepted);
        count(&self.counters.sessions_opened);
        self.generation += 1;
        self.sessions
            .push(Session::new(key.1, key.2, key.0, self.generation, now));
        self.init_b.push((self.generation, now));
        self.counters
            .sessions
            .store(self.sessions.len() as u64, Ordering::Relaxed);
        self.send(key.0, key.1, Kind::InitB, key.2, 0, &[]);
    }

    fn keystrokes(&mut self, i: usize, seq: u8, data: &[u8], now: Instant) {
        let s = &mut self.sessions[i];
        let action = s.keystrokes(seq, data, &self.texts, now);
        let (key, generation, peer) = ((s.port, s.peer, s.tag), s.generation, s.peer);
        match action {
            Some(Action::Run(line)) => {
                count(&self.counters.commands);
                let user = format!("cec {peer}");
                if let Err(e) = self.jobs.try_send((key, generation, line.clone(), user)) {
                    let why = match e {
                        mpsc::TrySendError::Full(_) => {
                            "error: the shelf is busy with other console commands; try again\n"
                        }
                        mpsc::TrySendError::Disconnected(_) => {
                            "error: the shelf's command runner stopped\n"
                        }
                    };
                    self.sessions[i].answer(why, &self.texts);
                } else {
                    self.note(peer, &format!("command '{line}'"));
                }
            }
            Some(Action::Close) => self.drop_session(i, "closed", End::ByShelf),
            None => {}
        }
    }

    fn answer(&mut self, key: Key, generation: u64, text: &str) {
        let Some(i) = self.find(key) else { return };
        // An answer for an earlier session with the same key is dropped.
        if self.sessions[i].generation == generation {
            self.sessions[i].answer(text, &self.texts);
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        let mut out = [0u8; CHUNK];
        let mut i = 0;
        while i < self.sessions.len() {
            let s = &mut self.sessions[i];
            let (port, peer, tag, generation) = (s.port, s.peer, s.tag, s.generation);
            if !s.is_open() {
                if now.duration_since(s.created) >= HANDSHAKE_TIMEOUT {
                    self.drop_session(i, "the client did not finish the handshake", End::ByShelf);
                    continue;
                }
                let due = self
                    .init_b
                    .iter_mut()
                    .find(|(g, _)| *g == generation)
                    .filter(|(_, at)| now.duration_since(*at) >= INIT_B_RESEND);
                if let Some(entry) = due {
                    entry.1 = now;
                    self.send(port, peer, Kind::InitB, tag, 0, &[]);
                }
                i += 1;
                continue;
            }
            match s.poll(now, &mut out) {
                Outgoing::Idle => i += 1,
                Outgoing::Data { seq, len, resend } => {
                    if resend {
                        count(&self.counters.resends);
                    }
                    self.send(port, peer, Kind::Data, tag, seq, &out[..len]);
                    i += 1;
                }
                Outgoing::Expired => {
                    count(&self.counters.sessions_expired);
                    self.drop_session(i, "the client stopped answering", End::ByShelf);
                }
                Outgoing::Done => self.drop_session(i, "closed", End::ByShelf),
            }
        }
    }

    fn drop_session(&mut self, i: usize, why: &str, end: End) {
        let s = self.sessions.swap_remove(i);
        self.init_b.retain(|(g, _)| *g != s.generation);
        if end == End::ByShelf {
            self.send(s.port, s.peer, Kind::Reset, s.tag, 0, &[]);
        }
        let now = Instant::now();
        if self
            .lockouts
            .wrong(s.peer, u32::from(s.wrong_passwords), now)
        {
            tracing::warn!(host = %s.peer, "console over Ethernet: too many wrong passwords; this host is refused for a minute");
        }
        self.counters
            .sessions
            .store(self.sessions.len() as u64, Ordering::Relaxed);
        self.note(s.peer, &format!("session ended ({why})"));
    }

    fn send(&mut self, port: usize, dst: MacAddr, kind: Kind, tag: u8, seq: u8, data: &[u8]) {
        let socket = &self.sockets[port];
        if let Err(e) = socket.send_frame(&mut self.frame, dst, kind, tag, seq, data) {
            tracing::debug!(port = socket.name(), error = %e, "console frame not sent");
        }
    }
}
