//! The console server over Ethernet: one thread with a console socket per AoE port, a
//! bounded table of sessions, and a second thread that runs their command lines on the
//! shelf (through the same admin channel as `ethershelf console`). Nothing here touches the
//! data path: its frames arrive on their own sockets and its commands queue like the
//! console's.

use super::counters::CecCounters;
use super::frame::{CecFrame, Kind, MAX_FRAME};
use super::session::{Action, Outgoing, Session, Texts, CHUNK};
use super::socket::{wait_readable, CecSocket};
use crate::wire::MacAddr;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
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
/// A session whose client never finishes the handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

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

struct Server {
    sockets: Vec<CecSocket>,
    settings: CecSettings,
    texts: Texts,
    sessions: Vec<Session>,
    counters: Arc<CecCounters>,
    jobs: mpsc::Sender<(Key, String, String)>,
    frame: [u8; MAX_FRAME],
    /// When "every session slot is taken" was last logged (a flood logs once per minute).
    full_logged: Option<Instant>,
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
    let (job_tx, job_rx) = mpsc::channel::<(Key, String, String)>();
    let (done_tx, done_rx) = mpsc::channel::<(Key, String)>();
    std::thread::Builder::new()
        .name("cec-commands".into())
        .spawn(move || {
            for (key, line, user) in job_rx {
                let answer = runner(&line, &user);
                if done_tx.send((key, answer)).is_err() {
                    break;
                }
            }
        })?;
    let ports: Vec<String> = sockets.iter().map(|s| s.name().to_string()).collect();
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
        full_logged: None,
    };
    std::thread::Builder::new()
        .name("cec".into())
        .spawn(move || server.run(done_rx))?;
    tracing::info!(ports = ?ports, "console over Ethernet (CEC) ready");
    Ok(())
}

impl Server {
    fn run(&mut self, answers: mpsc::Receiver<(Key, String)>) {
        for port in 0..self.sockets.len() {
            let offer = self.offer_text();
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
                    Ok((key, text)) => self.answer(key, &text),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            self.timers();
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

    fn count(&self, what: &std::sync::atomic::AtomicU64) {
        what.fetch_add(1, Ordering::Relaxed);
    }

    fn frame_in(&mut self, port: usize, bytes: &[u8]) {
        let Ok(f) = CecFrame::parse(bytes) else {
            self.count(&self.counters.malformed);
            return;
        };
        let ours = self.sockets[port].mac();
        if f.dst != ours && f.dst != MacAddr::BROADCAST {
            return;
        }
        if f.src.is_multicast() || f.src == ours {
            self.count(&self.counters.malformed);
            return;
        }
        let now = Instant::now();
        let key = (port, f.src, f.tag);
        match f.kind {
            Kind::Discover | Kind::InitA if !self.allowed(f.src) => {
                self.count(&self.counters.refused_host);
                tracing::debug!(host = %f.src, "console over Ethernet: host not allowed");
            }
            Kind::Discover => {
                self.count(&self.counters.accepted);
                let offer = self.offer_text();
                self.send(port, f.src, Kind::Offer, f.tag, 0, offer.as_bytes());
            }
            Kind::InitA => self.connect(key, now),
            Kind::InitC => match self.find(key) {
                Some(i) => {
                    self.count(&self.counters.accepted);
                    let was_open = self.sessions[i].is_open();
                    self.sessions[i].open(&self.texts, now);
                    if !was_open {
                        tracing::info!(host = %f.src, port = self.sockets[port].name(), "console session opened");
                    }
                }
                None => self.count(&self.counters.no_session),
            },
            Kind::Data => match self.find(key) {
                Some(i) => {
                    self.count(&self.counters.accepted);
                    self.send(port, f.src, Kind::Ack, f.tag, f.seq, &[]);
                    self.keystrokes(i, f.seq, f.data, now);
                }
                None => self.count(&self.counters.no_session),
            },
            Kind::Ack => match self.find(key) {
                Some(i) => {
                    self.count(&self.counters.accepted);
                    self.sessions[i].acked(f.seq, now);
                }
                None => self.count(&self.counters.no_session),
            },
            Kind::Reset => match self.find(key) {
                Some(i) => {
                    self.count(&self.counters.accepted);
                    self.drop_session(i, "closed by the client");
                }
                None => self.count(&self.counters.no_session),
            },
            // Another shelf's answers: not for a server.
            Kind::InitB | Kind::Offer => {}
        }
    }

    fn connect(&mut self, key: Key, now: Instant) {
        if let Some(i) = self.find(key) {
            // The client starts over with the same tag (it missed our init-b).
            self.sessions.swap_remove(i);
        } else if self.sessions.len() >= self.settings.max_sessions {
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
                Some(i) => self.drop_session(i, "idle; its place went to a new session"),
                None => {
                    self.count(&self.counters.sessions_full);
                    if self
                        .full_logged
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
                    {
                        self.full_logged = Some(now);
                        tracing::warn!(host = %key.1, limit = self.settings.max_sessions, "console session refused: every session slot is taken (logged once a minute; see ethershelf_cec_frames_total{{outcome=\"sessions_full\"}})");
                    }
                    return;
                }
            }
        }
        self.count(&self.counters.accepted);
        self.count(&self.counters.sessions_opened);
        self.sessions.push(Session::new(key.1, key.2, key.0, now));
        self.counters
            .sessions
            .store(self.sessions.len() as u64, Ordering::Relaxed);
        self.send(key.0, key.1, Kind::InitB, key.2, 0, &[]);
    }

    fn keystrokes(&mut self, i: usize, seq: u8, data: &[u8], now: Instant) {
        let s = &mut self.sessions[i];
        match s.keystrokes(seq, data, &self.texts, now) {
            Some(Action::Run(line)) => {
                let key = (s.port, s.peer, s.tag);
                let user = format!("cec {}", s.peer);
                tracing::info!(host = %s.peer, command = %line, "console command over Ethernet");
                self.count(&self.counters.commands);
                if self.jobs.send((key, line, user)).is_err() {
                    self.sessions[i]
                        .answer("error: the shelf's command runner stopped\n", &self.texts);
                }
            }
            Some(Action::Close) => self.drop_session(i, "closed"),
            None => {}
        }
    }

    fn answer(&mut self, key: Key, text: &str) {
        let Some(i) = self.find(key) else { return };
        self.sessions[i].answer(text, &self.texts);
    }

    fn timers(&mut self) {
        let now = Instant::now();
        let mut out = [0u8; CHUNK];
        let mut i = 0;
        while i < self.sessions.len() {
            let s = &mut self.sessions[i];
            let (port, peer, tag) = (s.port, s.peer, s.tag);
            if !s.is_open() && now.duration_since(s.last_heard) >= HANDSHAKE_TIMEOUT {
                self.drop_session(i, "the client did not finish the handshake");
                continue;
            }
            match s.poll(now, &mut out) {
                Outgoing::Idle => i += 1,
                Outgoing::Data { seq, len, resend } => {
                    if resend {
                        self.count(&self.counters.resends);
                    }
                    self.send(port, peer, Kind::Data, tag, seq, &out[..len]);
                    i += 1;
                }
                Outgoing::Expired => {
                    self.count(&self.counters.sessions_expired);
                    self.drop_session(i, "the client stopped answering");
                }
                Outgoing::Done => {
                    self.send(port, peer, Kind::Reset, tag, 0, &[]);
                    self.drop_session(i, "closed");
                }
            }
        }
    }

    fn drop_session(&mut self, i: usize, why: &str) {
        let s = self.sessions.swap_remove(i);
        self.counters
            .sessions
            .store(self.sessions.len() as u64, Ordering::Relaxed);
        tracing::info!(host = %s.peer, why, "console session ended");
    }

    fn send(&mut self, port: usize, dst: MacAddr, kind: Kind, tag: u8, seq: u8, data: &[u8]) {
        let socket = &self.sockets[port];
        let f = CecFrame {
            dst,
            src: socket.mac(),
            kind,
            tag,
            seq,
            data,
        };
        let n = f.emit(&mut self.frame);
        if let Err(e) = socket.send(&self.frame[..n]) {
            tracing::debug!(port = socket.name(), error = %e, "console frame not sent");
        }
    }
}
