//! One console session over Ethernet, as a state machine without I/O: keystrokes in,
//! command lines out, console text queued for stop-and-wait delivery with retransmission.
//! The server feeds it frames and the clock and sends what it hands back.

use super::editor::{Key, LineEditor};
use crate::admin::client::{is_destructive, CONFIRM_PROMPT};
use crate::wire::MacAddr;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Data bytes per frame the shelf sends (under the 255 the length field allows).
pub const CHUNK: usize = 250;
/// Resend an unacknowledged frame after this long.
pub const RESEND_AFTER: Duration = Duration::from_secs(2);
/// Resends before the session is dropped.
pub const RESENDS: u8 = 3;
/// Console text waiting for the client, at most; more is cut with a note.
pub const MAX_PENDING: usize = 1 << 20;
/// Wrong passwords before the session is closed.
pub const PASSWORD_TRIES: u8 = 3;

/// What the session is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// init-a answered; init-c not yet seen.
    Connecting,
    /// The password.
    Password { tries: u8 },
    /// A command line.
    Prompt,
    /// The answer to a confirmation question about this command line.
    Confirm(String),
    /// A command runs; keystrokes are not taken.
    Running,
    /// Closing once the last text is delivered.
    Closing,
}

/// What the server should do after a keystroke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run this command line on the shelf and hand the answer to [`Session::answer`].
    Run(String),
    /// Close the session now (send a reset).
    Close,
}

/// What to send next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    /// Nothing now.
    Idle,
    /// A data frame with this sequence and the first `len` bytes of [`Session::pending`].
    Data { seq: u8, len: usize, resend: bool },
    /// The client stopped acknowledging: drop the session.
    Expired,
    /// All text delivered and the session asked to close.
    Done,
}

/// The fixed texts of a shelf's sessions.
#[derive(Debug, Clone)]
pub struct Texts {
    /// `ethershelf shelf N> `.
    pub prompt: String,
    /// Shown once the session opens.
    pub banner: String,
    /// Asked before the prompt, if set.
    pub password: Option<String>,
}

struct Outstanding {
    seq: u8,
    len: usize,
    sent_at: Instant,
    resends: u8,
}

/// One client's session.
pub struct Session {
    /// The client's address.
    pub peer: MacAddr,
    /// The client's connection tag.
    pub tag: u8,
    /// The port it came in on.
    pub port: usize,
    /// Told apart from an earlier session with the same key (a late answer is dropped).
    pub generation: u64,
    /// When init-a made it.
    pub created: Instant,
    /// Last progress from the client: a new keystroke, or the ack of what was outstanding
    /// (repeated frames do not count, so they cannot keep an idle session alive).
    pub last_heard: Instant,
    /// Wrong passwords typed in this session.
    pub wrong_passwords: u8,
    stage: Stage,
    /// Keystrokes are ignored until then (after a wrong password).
    quiet_until: Option<Instant>,
    /// Output was cut because too much waited; nothing more is queued until it drains.
    cut: bool,
    /// The last chunk was given up after its resends (its ack may be what was lost: the
    /// Coraid client does not ack a repeated sequence). A second one ends the session.
    gave_up: bool,
    editor: LineEditor,
    pending: VecDeque<u8>,
    outstanding: Option<Outstanding>,
    next_seq: u8,
    last_rx_seq: Option<u8>,
    /// The last byte queued (a `\n` after a `\r` needs no second `\r`).
    last_said: u8,
}

impl Session {
    /// A session after the client's init-a.
    pub fn new(peer: MacAddr, tag: u8, port: usize, generation: u64, now: Instant) -> Session {
        Session {
            peer,
            tag,
            port,
            generation,
            created: now,
            last_heard: now,
            wrong_passwords: 0,
            stage: Stage::Connecting,
            quiet_until: None,
            cut: false,
            gave_up: false,
            editor: LineEditor::default(),
            pending: VecDeque::new(),
            outstanding: None,
            next_seq: 1,
            last_rx_seq: None,
            last_said: 0,
        }
    }

    /// The client's init-c: the banner and the password question or the prompt.
    pub fn open(&mut self, texts: &Texts, now: Instant) {
        self.last_heard = now;
        if self.stage != Stage::Connecting {
            return;
        }
        self.say(&texts.banner);
        match texts.password {
            Some(_) => {
                self.stage = Stage::Password { tries: 0 };
                self.editor.hidden = true;
                self.say("password: ");
            }
            None => {
                self.stage = Stage::Prompt;
                self.say(&texts.prompt);
            }
        }
    }

    /// Has the client finished the handshake?
    pub fn is_open(&self) -> bool {
        self.stage != Stage::Connecting
    }

    /// Is the session still waiting for its password?
    pub fn is_authenticating(&self) -> bool {
        matches!(self.stage, Stage::Password { .. })
    }

    /// A data frame from the client (already acknowledged by the server). Returns `None`
    /// for a duplicate (same sequence as the last one), else what the keystrokes ask for.
    pub fn keystrokes(
        &mut self,
        seq: u8,
        data: &[u8],
        texts: &Texts,
        now: Instant,
    ) -> Option<Action> {
        if self.last_rx_seq == Some(seq) {
            return None;
        }
        self.last_heard = now;
        self.last_rx_seq = Some(seq);
        if self.quiet_until.is_some_and(|t| now < t) {
            return None;
        }
        let mut action = None;
        for &b in data {
            if action.is_some() || matches!(self.stage, Stage::Running | Stage::Closing) {
                break;
            }
            if self.stage == Stage::Connecting {
                // Data before init-c: the client missed our init-b answer; take it as open.
                self.open(texts, now);
            }
            let mut echo = Vec::new();
            let key = self.editor.key(b, &mut echo);
            self.say_bytes(&echo);
            action = match key {
                Key::Edited => None,
                Key::Interrupt => {
                    if matches!(self.stage, Stage::Confirm(_)) {
                        self.say("cancelled\n");
                        self.stage = Stage::Prompt;
                    }
                    self.reprompt(texts);
                    None
                }
                Key::Line(line) => self.line(&line, texts, now),
            };
        }
        action
    }

    fn reprompt(&mut self, texts: &Texts) {
        match self.stage {
            Stage::Password { .. } => self.say("password: "),
            Stage::Prompt => self.say(&texts.prompt),
            _ => {}
        }
    }

    fn line(&mut self, typed: &str, texts: &Texts, now: Instant) -> Option<Action> {
        let line = typed.trim();
        match std::mem::replace(&mut self.stage, Stage::Prompt) {
            Stage::Password { tries } => {
                // The password as typed: spaces are part of it.
                if texts
                    .password
                    .as_deref()
                    .is_some_and(|p| same_secret(p, typed))
                {
                    self.editor.hidden = false;
                    self.say(&texts.prompt);
                    return None;
                }
                let tries = tries + 1;
                self.wrong_passwords = self.wrong_passwords.saturating_add(1);
                // Guessing costs time: keystrokes are ignored for a second.
                self.quiet_until = Some(now + Duration::from_secs(1));
                if tries >= PASSWORD_TRIES {
                    self.say("wrong password; closing\n");
                    self.stage = Stage::Closing;
                    return None;
                }
                self.say("wrong password\npassword: ");
                self.stage = Stage::Password { tries };
                None
            }
            Stage::Confirm(command) => {
                if line.eq_ignore_ascii_case("y") || line.eq_ignore_ascii_case("yes") {
                    self.stage = Stage::Running;
                    Some(Action::Run(command))
                } else {
                    self.say("cancelled\n");
                    self.say(&texts.prompt);
                    None
                }
            }
            Stage::Prompt => {
                if line.is_empty() {
                    self.say(&texts.prompt);
                    return None;
                }
                if line == "quit" || line == "exit" {
                    self.say("bye\n");
                    self.stage = Stage::Closing;
                    return None;
                }
                let words: Vec<String> = line.split_whitespace().map(String::from).collect();
                if is_destructive(&words) && !words.iter().any(|w| w == "-f") {
                    self.say(&format!(
                        "'{line}' changes what hosts see or clears data. {CONFIRM_PROMPT}"
                    ));
                    self.stage = Stage::Confirm(format!("{line} -f"));
                    return None;
                }
                self.stage = Stage::Running;
                Some(Action::Run(line.to_string()))
            }
            other => {
                self.stage = other;
                None
            }
        }
    }

    /// The answer of the command this session ran.
    pub fn answer(&mut self, text: &str, texts: &Texts) {
        if self.stage == Stage::Running {
            self.say(text);
            if !text.is_empty() && !text.ends_with('\n') {
                self.say("\n");
            }
            self.stage = Stage::Prompt;
            self.say(&texts.prompt);
        }
    }

    /// Queues console text, `\n` sent as `\r\n`.
    pub fn say(&mut self, text: &str) {
        self.say_bytes(text.as_bytes());
    }

    fn say_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.cut {
                return;
            }
            if self.pending.len() >= MAX_PENDING {
                self.pending.extend(b"\r\n[output cut: too much]\r\n");
                self.cut = true;
                return;
            }
            if b == b'\n' && self.last_said != b'\r' {
                self.pending.push_back(b'\r');
            }
            self.pending.push_back(b);
            self.last_said = b;
        }
    }

    /// The client acknowledged `seq`.
    pub fn acked(&mut self, seq: u8, now: Instant) {
        if let Some(o) = &self.outstanding {
            if o.seq == seq {
                self.pending.drain(..o.len);
                self.outstanding = None;
                self.last_heard = now;
                self.gave_up = false;
                if self.pending.is_empty() {
                    self.cut = false;
                }
            }
        }
    }

    /// What to send now; copies the frame's data into `out`.
    pub fn poll(&mut self, now: Instant, out: &mut [u8; CHUNK]) -> Outgoing {
        if let Some(o) = &mut self.outstanding {
            if now.duration_since(o.sent_at) < RESEND_AFTER {
                return Outgoing::Idle;
            }
            if o.resends >= RESENDS {
                if self.gave_up {
                    return Outgoing::Expired;
                }
                // Perhaps only the ack was lost (the client then ignores our resends): take
                // the chunk as delivered and go on; the next one tells.
                let len = o.len;
                self.pending.drain(..len);
                self.outstanding = None;
                self.gave_up = true;
                return self.poll(now, out);
            }
            o.resends += 1;
            o.sent_at = now;
            let (seq, len) = (o.seq, o.len);
            copy_front(&self.pending, &mut out[..len]);
            return Outgoing::Data {
                seq,
                len,
                resend: true,
            };
        }
        if self.pending.is_empty() {
            return if self.stage == Stage::Closing {
                Outgoing::Done
            } else {
                Outgoing::Idle
            };
        }
        let len = self.pending.len().min(CHUNK);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.outstanding = Some(Outstanding {
            seq,
            len,
            sent_at: now,
            resends: 0,
        });
        copy_front(&self.pending, &mut out[..len]);
        Outgoing::Data {
            seq,
            len,
            resend: false,
        }
    }

    /// Asks to close once the text queued so far is delivered.
    pub fn close_after_output(&mut self) {
        self.stage = Stage::Closing;
    }

    /// Console text not yet acknowledged.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// What [`Action`] the session's stage implies when no keystroke arrives: none.
    pub fn is_running(&self) -> bool {
        self.stage == Stage::Running
    }
}

fn copy_front(queue: &VecDeque<u8>, out: &mut [u8]) {
    let (a, b) = queue.as_slices();
    let from_a = a.len().min(out.len());
    out[..from_a].copy_from_slice(&a[..from_a]);
    let rest = out.len() - from_a;
    out[from_a..].copy_from_slice(&b[..rest]);
}

/// Compares a typed password with the configured one in time independent of where they
/// differ.
fn same_secret(expected: &str, typed: &str) -> bool {
    let (a, b) = (expected.as_bytes(), typed.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Texts {
        Texts {
            prompt: "ethershelf shelf 1> ".into(),
            banner: "hello\n".into(),
            password: None,
        }
    }

    /// Delivers everything pending (acking each frame) and returns it as text.
    fn drain(s: &mut Session, now: Instant) -> String {
        let mut text = Vec::new();
        let mut buf = [0u8; CHUNK];
        while let Outgoing::Data { seq, len, .. } = s.poll(now, &mut buf) {
            text.extend_from_slice(&buf[..len]);
            s.acked(seq, now);
        }
        String::from_utf8(text).unwrap()
    }

    fn type_line(s: &mut Session, seq: &mut u8, line: &str, texts: &Texts) -> Option<Action> {
        type_line_at(s, seq, line, texts, Instant::now())
    }

    fn type_line_at(
        s: &mut Session,
        seq: &mut u8,
        line: &str,
        texts: &Texts,
        now: Instant,
    ) -> Option<Action> {
        let mut action = None;
        for b in line.bytes().chain(std::iter::once(b'\r')) {
            *seq = seq.wrapping_add(1);
            if let Some(a) = s.keystrokes(*seq, &[b], texts, now) {
                action = Some(a);
            }
        }
        action
    }

    #[test]
    fn a_session_prompts_runs_commands_and_confirms_destructive_ones() {
        let now = Instant::now();
        let mut s = Session::new(MacAddr([2, 0, 0, 0, 0, 9]), 7, 0, 1, now);
        s.open(&plain(), now);
        assert_eq!(drain(&mut s, now), "hello\r\nethershelf shelf 1> ");
        let mut seq = 0;
        assert_eq!(
            type_line(&mut s, &mut seq, "list -l", &plain()),
            Some(Action::Run("list -l".into()))
        );
        s.answer("  0 1.0GB online\n", &plain());
        assert_eq!(
            drain(&mut s, now),
            "list -l\r\n  0 1.0GB online\r\nethershelf shelf 1> "
        );
        assert_eq!(type_line(&mut s, &mut seq, "remove 3", &plain()), None);
        assert!(drain(&mut s, now).contains("Continue? [n] "));
        assert_eq!(
            type_line(&mut s, &mut seq, "y", &plain()),
            Some(Action::Run("remove 3 -f".into()))
        );
        s.answer("LUN 3 removed\n", &plain());
        drain(&mut s, now);
        assert_eq!(type_line(&mut s, &mut seq, "offline 2", &plain()), None);
        assert_eq!(type_line(&mut s, &mut seq, "n", &plain()), None);
        assert!(drain(&mut s, now).ends_with("cancelled\r\nethershelf shelf 1> "));
    }

    #[test]
    fn duplicates_are_ignored_and_lost_frames_are_resent_then_the_session_expires() {
        let t0 = Instant::now();
        let mut s = Session::new(MacAddr([2, 0, 0, 0, 0, 9]), 7, 0, 1, t0);
        s.open(&plain(), t0);
        assert_eq!(s.keystrokes(1, b"w", &plain(), t0), None);
        assert_eq!(s.keystrokes(1, b"w", &plain(), t0), None);
        let mut buf = [0u8; CHUNK];
        let Outgoing::Data { seq, len, resend } = s.poll(t0, &mut buf) else {
            panic!("nothing sent")
        };
        assert_eq!((seq, resend), (1, false));
        assert_eq!(&buf[..len], b"hello\r\nethershelf shelf 1> w");
        assert_eq!(s.poll(t0, &mut buf), Outgoing::Idle);
        let mut t = t0;
        for _ in 0..RESENDS {
            t += RESEND_AFTER;
            assert_eq!(
                s.poll(t, &mut buf),
                Outgoing::Data {
                    seq: 1,
                    len,
                    resend: true
                }
            );
        }
        // Given up once (perhaps only the ack was lost): the next chunk goes out...
        t += RESEND_AFTER;
        assert_eq!(s.poll(t, &mut buf), Outgoing::Idle);
        s.say("more");
        let Outgoing::Data { seq, .. } = s.poll(t, &mut buf) else {
            panic!("the next chunk was not sent")
        };
        assert_eq!(seq, 2);
        // ...and when it is not acknowledged either, the session is over.
        for _ in 0..=RESENDS {
            t += RESEND_AFTER;
            assert!(
                matches!(s.poll(t, &mut buf), Outgoing::Data { resend: true, .. })
                    || s.poll(t, &mut buf) == Outgoing::Expired
            );
        }
        t += RESEND_AFTER;
        assert_eq!(s.poll(t, &mut buf), Outgoing::Expired);
    }

    #[test]
    fn a_password_is_asked_hidden_and_three_wrong_ones_close() {
        let texts = Texts {
            password: Some("s3cret".into()),
            ..plain()
        };
        let now = Instant::now();
        let mut s = Session::new(MacAddr([2, 0, 0, 0, 0, 9]), 7, 0, 1, now);
        s.open(&texts, now);
        assert!(drain(&mut s, now).ends_with("password: "));
        let mut seq = 0;
        assert_eq!(type_line_at(&mut s, &mut seq, "list", &texts, now), None);
        let said = drain(&mut s, now);
        assert!(!said.contains("list"), "the password was echoed: {said:?}");
        assert!(said.contains("wrong password"));
        // Typed at once after a wrong one: ignored.
        assert_eq!(type_line_at(&mut s, &mut seq, "s3cret", &texts, now), None);
        assert!(!drain(&mut s, now).contains("shelf 1> "));
        let later = now + Duration::from_secs(2);
        assert_eq!(
            type_line_at(&mut s, &mut seq, "s3cret", &texts, later),
            None
        );
        assert!(drain(&mut s, later).ends_with("ethershelf shelf 1> "));
        assert_eq!(
            type_line_at(&mut s, &mut seq, "when", &texts, later),
            Some(Action::Run("when".into()))
        );
        let mut s = Session::new(MacAddr([2, 0, 0, 0, 0, 9]), 8, 0, 2, now);
        s.open(&texts, now);
        for i in 0..PASSWORD_TRIES {
            let at = now + Duration::from_secs(2 * u64::from(i));
            assert_eq!(type_line_at(&mut s, &mut seq, "guess", &texts, at), None);
        }
        assert_eq!(s.wrong_passwords, PASSWORD_TRIES);
        drain(&mut s, now);
        let mut buf = [0u8; CHUNK];
        assert_eq!(s.poll(now, &mut buf), Outgoing::Done);
    }

    #[test]
    fn long_answers_go_in_chunks_in_order() {
        let now = Instant::now();
        let mut s = Session::new(MacAddr([2, 0, 0, 0, 0, 9]), 7, 0, 1, now);
        s.open(&plain(), now);
        drain(&mut s, now);
        let mut seq = 0;
        type_line(&mut s, &mut seq, "status", &plain());
        let body: String = (0..300).map(|i| format!("line {i}\n")).collect();
        s.answer(&body, &plain());
        let text = drain(&mut s, now);
        assert_eq!(
            text,
            format!(
                "status\r\n{}ethershelf shelf 1> ",
                body.replace('\n', "\r\n")
            )
        );
    }
}
