//! `ethershelf cec`: the client side of the console over Ethernet. Probes a segment for
//! shelves, opens a session with one, and either hands it a raw terminal (a person) or types
//! one command line and prints its answer (a script).

use super::frame::{CecFrame, Kind, MAX_FRAME};
use super::socket::{wait_readable, CecSocket};
use crate::wire::MacAddr;
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// Resend an unacknowledged keystroke after this long.
const KEY_RESEND: Duration = Duration::from_secs(1);
/// Resends of a keystroke before the session is given up (more than Coraid's client:
/// a script on a lossy segment should not fail for one unlucky keystroke).
const KEY_RESENDS: u32 = 5;
/// The shelf's confirmation question ends with this.
const CONFIRM_TAIL: &str = "Continue? [n] ";

/// A shelf that answered a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Its shelf number (the first word of its offer; `None` if not a number).
    pub shelf: Option<u32>,
    /// The rest of the offer.
    pub description: String,
    /// Its address on this segment.
    pub mac: MacAddr,
}

fn send(
    socket: &CecSocket,
    dst: MacAddr,
    kind: Kind,
    tag: u8,
    seq: u8,
    data: &[u8],
) -> io::Result<()> {
    socket.send_frame(&mut [0u8; MAX_FRAME], dst, kind, tag, seq, data)
}

/// Broadcasts a discover on `socket` (three times, spread over `wait`, as a frame may be
/// lost) and collects the offers that arrive within `wait`.
pub fn probe(socket: &CecSocket, wait: Duration) -> io::Result<Vec<Offer>> {
    let start = Instant::now();
    let end = start + wait;
    let mut discovers = 0u32;
    let mut offers: Vec<Offer> = Vec::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        if discovers < 3 && start.elapsed() >= wait * discovers / 3 {
            send(socket, MacAddr::BROADCAST, Kind::Discover, 0, 0, &[])?;
            discovers += 1;
        }
        let left = end.saturating_duration_since(Instant::now());
        wait_readable(
            std::slice::from_ref(socket),
            left.as_millis().clamp(1, 100) as i32,
        );
        while let Some(n) = socket.recv(&mut buf)? {
            let Ok(f) = CecFrame::parse(&buf[..n]) else {
                continue;
            };
            if f.kind != Kind::Offer || f.dst != socket.mac() || f.data.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(f.data);
            let mut words = text.trim().splitn(2, [' ', '\t']);
            let shelf = words.next().and_then(|w| w.parse().ok());
            let description = words.next().unwrap_or("").trim().to_string();
            if !offers.iter().any(|o| o.mac == f.src) {
                offers.push(Offer {
                    shelf,
                    description,
                    mac: f.src,
                });
            }
        }
    }
    Ok(offers)
}

/// An open session with one shelf.
pub struct Connection<'a> {
    socket: &'a CecSocket,
    server: MacAddr,
    tag: u8,
    sent_seq: u8,
    last_rx_seq: u8,
    closed: bool,
}

impl<'a> Connection<'a> {
    /// The handshake: init-a (resent up to three times within `wait`), init-b, init-c.
    pub fn open(
        socket: &'a CecSocket,
        server: MacAddr,
        wait: Duration,
    ) -> io::Result<Connection<'a>> {
        // A random tag: two scripted sessions from one host must not share one.
        let mut tag = [0u8; 1];
        // SAFETY: getrandom writes at most one byte into the live one-byte buffer.
        if unsafe { libc::getrandom(tag.as_mut_ptr().cast(), 1, 0) } != 1 {
            let pid = std::process::id();
            tag[0] = ((pid >> 8) ^ (pid & 0xff)) as u8;
        }
        let tag = tag[0];
        let mut buf = [0u8; 2048];
        for _ in 0..3 {
            send(socket, server, Kind::InitA, tag, 0, &[])?;
            let end = Instant::now() + wait / 3;
            while Instant::now() < end {
                wait_readable(std::slice::from_ref(socket), 50);
                while let Some(n) = socket.recv(&mut buf)? {
                    let Ok(f) = CecFrame::parse(&buf[..n]) else {
                        continue;
                    };
                    if f.src == server && f.kind == Kind::InitB && f.tag == tag {
                        send(socket, server, Kind::InitC, tag, 0, &[])?;
                        return Ok(Connection {
                            socket,
                            server,
                            tag,
                            sent_seq: 0,
                            last_rx_seq: 0xff,
                            closed: false,
                        });
                    }
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("shelf {server} did not answer the connection request (is the console over Ethernet on, and this host allowed?)"),
        ))
    }

    /// Takes what arrived within `timeout`: console text goes to `out`, each data frame is
    /// acknowledged. Fails once the shelf closed the session.
    pub fn pump(&mut self, timeout: Duration, out: &mut Vec<u8>) -> io::Result<Option<u8>> {
        let mut acked = None;
        wait_readable(
            std::slice::from_ref(self.socket),
            timeout.as_millis().min(1000) as i32,
        );
        let mut buf = [0u8; 2048];
        while let Some(n) = self.socket.recv(&mut buf)? {
            let Ok(f) = CecFrame::parse(&buf[..n]) else {
                continue;
            };
            if f.src != self.server || n < 60 {
                continue;
            }
            match f.kind {
                Kind::Data if f.tag == self.tag => {
                    if f.seq != self.last_rx_seq {
                        out.extend_from_slice(f.data);
                        self.last_rx_seq = f.seq;
                    }
                    send(self.socket, self.server, Kind::Ack, self.tag, f.seq, &[])?;
                }
                Kind::Ack if f.tag == self.tag => acked = Some(f.seq),
                Kind::Reset if f.tag == self.tag => {
                    self.closed = true;
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "the shelf closed the session",
                    ));
                }
                _ => {}
            }
        }
        Ok(acked)
    }

    /// Sends one keystroke and waits for its acknowledgement (resending it), collecting
    /// console text meanwhile.
    pub fn key(&mut self, byte: u8, out: &mut Vec<u8>) -> io::Result<()> {
        self.sent_seq = self.sent_seq.wrapping_add(1);
        let seq = self.sent_seq;
        for _ in 0..=KEY_RESENDS {
            send(self.socket, self.server, Kind::Data, self.tag, seq, &[byte])?;
            let end = Instant::now() + KEY_RESEND;
            while Instant::now() < end {
                if self.pump(end.saturating_duration_since(Instant::now()), out)? == Some(seq) {
                    return Ok(());
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the shelf stopped acknowledging keystrokes (connection timed out)",
        ))
    }

    /// Types `text` one keystroke at a time.
    pub fn type_text(&mut self, text: &str, out: &mut Vec<u8>) -> io::Result<()> {
        for b in text.bytes() {
            self.key(b, out)?;
        }
        Ok(())
    }

    /// Collects console text until `done` says the text so far is complete, or `timeout`.
    pub fn until(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> io::Result<()> {
        let end = Instant::now() + timeout;
        while !done(&String::from_utf8_lossy(out)) {
            if Instant::now() >= end {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the shelf's console did not come back with a prompt in time",
                ));
            }
            self.pump(Duration::from_millis(100), out)?;
        }
        Ok(())
    }

    /// Ends the session (reset).
    pub fn close(&mut self) {
        if !self.closed {
            let _ = send(self.socket, self.server, Kind::Reset, self.tag, 0, &[]);
            self.closed = true;
        }
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Does the console text end at a shelf prompt (`ethershelf shelf N> `, or a Coraid
/// shelf's `SR shelf N> `)?
fn at_prompt(text: &str) -> bool {
    text.rsplit("\r\n")
        .next()
        .is_some_and(|last| last.contains("shelf ") && last.ends_with("> "))
}

/// What one scripted command needs.
pub struct Script<'s> {
    /// The command line.
    pub command: &'s str,
    /// Typed when the shelf asks for its password.
    pub password: Option<&'s str>,
    /// Answer a confirmation question with yes (else no).
    pub yes: bool,
    /// Longest wait for any answer.
    pub timeout: Duration,
}

/// What one scripted command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// The console's text (echo and final prompt removed, line ends as `\n`).
    pub text: String,
    /// The shelf asked for confirmation and the answer was no.
    pub cancelled: bool,
    /// The shelf answered with an error.
    pub failed: bool,
}

/// Runs one command line in a session and returns its output.
pub fn run_command(conn: &mut Connection<'_>, script: &Script<'_>) -> io::Result<CommandOutput> {
    let mut out = Vec::new();
    conn.until(&mut out, script.timeout, |t| {
        at_prompt(t) || t.ends_with("password: ")
    })?;
    if String::from_utf8_lossy(&out).ends_with("password: ") {
        let Some(pw) = script.password else {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the shelf asks for a password: give --password or set ETHERSHELF_CEC_PASSWORD",
            ));
        };
        out.clear();
        conn.type_text(pw, &mut out)?;
        conn.type_text("\r", &mut out)?;
        conn.until(&mut out, script.timeout, |t| {
            at_prompt(t) || t.ends_with("password: ") || t.contains("closing")
        })?;
        if !at_prompt(&String::from_utf8_lossy(&out)) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the shelf refused the password",
            ));
        }
    }
    out.clear();
    conn.type_text(script.command.trim(), &mut out)?;
    conn.type_text("\r", &mut out)?;
    conn.until(&mut out, script.timeout, |t| {
        at_prompt(t) || t.ends_with(CONFIRM_TAIL)
    })?;
    let mut answer_from = 0;
    let asked = String::from_utf8_lossy(&out).ends_with(CONFIRM_TAIL);
    if asked {
        conn.type_text(if script.yes { "y\r" } else { "n\r" }, &mut out)?;
        conn.until(&mut out, script.timeout, at_prompt)?;
    }
    let text = String::from_utf8_lossy(&out).replace("\r\n", "\n");
    // Drop the echoed command line and the final prompt.
    let body = text.split_once('\n').map_or("", |(_, rest)| rest);
    let body = body.rsplit_once('\n').map_or("", |(head, _)| head);
    let text = if body.is_empty() {
        String::new()
    } else {
        format!("{body}\n")
    };
    if asked {
        // The answer starts after the line with the question and its reply.
        answer_from = text.find('\n').map_or(text.len(), |i| i + 1);
    }
    let answer = &text[answer_from..];
    Ok(CommandOutput {
        cancelled: asked && !script.yes,
        failed: crate::admin::client::answer_failed(answer),
        text,
    })
}

/// Restores the terminal's settings when dropped.
struct RawTerminal {
    saved: libc::termios,
}

impl RawTerminal {
    fn enter() -> io::Result<RawTerminal> {
        // SAFETY: termios is plain old data; tcgetattr fills it for fd 0.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a live termios.
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "standard input is not a terminal: use --command to run one command from a script",
            ));
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the live copy; tcsetattr applies it to fd 0.
        unsafe {
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(0, libc::TCSANOW, &raw);
        }
        Ok(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the settings read at `enter` on fd 0.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}

/// A person at a raw terminal: keystrokes go to the shelf, its text to the screen. `escape`
/// then `q` leaves; `escape` twice sends the escape byte itself.
pub fn interactive(conn: &mut Connection<'_>, escape: u8) -> io::Result<()> {
    let _raw = RawTerminal::enter()?;
    let mut stdout = io::stdout();
    let mut out = Vec::new();
    let mut after_escape = false;
    let mut key = [0u8; 1];
    loop {
        let mut fds = [libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one live pollfd.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
        if fds[0].revents & libc::POLLIN != 0 {
            // SAFETY: reads at most one byte into a live one-byte buffer.
            let n = unsafe { libc::read(0, key.as_mut_ptr().cast(), 1) };
            if n <= 0 {
                return Ok(());
            }
            let b = key[0];
            if after_escape {
                after_escape = false;
                match b {
                    b'q' | b'Q' => {
                        conn.close();
                        let _ = write!(stdout, "\r\n");
                        return Ok(());
                    }
                    b if b == escape => conn.key(b, &mut out)?,
                    _ => {
                        let _ = write!(
                            stdout,
                            "\r\n[escape: 'q' quits, the escape key again sends it]\r\n"
                        );
                    }
                }
            } else if b == escape {
                after_escape = true;
            } else {
                conn.key(b, &mut out)?;
            }
        } else {
            conn.pump(Duration::from_millis(50), &mut out)?;
        }
        if !out.is_empty() {
            stdout.write_all(&out)?;
            stdout.flush()?;
            out.clear();
        }
    }
}

/// Parses an escape key: a letter or `^X` means Ctrl-X, `\\` means Ctrl-\ (the default).
pub fn parse_escape(s: &str) -> Result<u8, String> {
    let c = s.strip_prefix('^').unwrap_or(s);
    match c.as_bytes() {
        [b] if b.is_ascii_alphabetic() || b"\\[]^_@".contains(b) => {
            Ok(b.to_ascii_uppercase() & 0x1f)
        }
        _ => Err(format!(
            "escape key '{s}': give one letter or one of \\ [ ] ^ _ (meaning Ctrl and that key)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keys_are_control_characters() {
        assert_eq!(parse_escape("\\"), Ok(0x1c));
        assert_eq!(parse_escape("^]"), Ok(0x1d));
        assert_eq!(parse_escape("a"), Ok(0x01));
        assert!(parse_escape("ab").is_err());
        assert!(parse_escape("1").is_err());
    }

    #[test]
    fn prompts_are_recognised_at_the_end_only() {
        assert!(at_prompt("x\r\nethershelf shelf 12> "));
        assert!(!at_prompt("ethershelf shelf 12> list\r\n"));
    }
}
