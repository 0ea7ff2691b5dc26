//! Line editing on the shelf's side of a console session: the client's terminal is raw and
//! sends one keystroke per frame, so the shelf echoes, erases and finishes lines itself.

/// Longest line kept; further keystrokes are not taken (and not echoed).
pub const MAX_LINE: usize = 1024;

/// What one keystroke did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// Nothing to act on (the echo, if any, is in the output).
    Edited,
    /// Enter: the finished line.
    Line(String),
    /// Ctrl-C: the line was dropped.
    Interrupt,
}

/// Where the editor is in a terminal escape sequence (arrow keys, Home, Delete...), which
/// it swallows whole rather than typing its printable tail into the line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Escape {
    #[default]
    None,
    /// After ESC.
    Started,
    /// Inside `ESC [` or `ESC O`, until the final byte.
    Sequence,
}

/// The line being typed.
#[derive(Debug, Default)]
pub struct LineEditor {
    line: Vec<u8>,
    after_cr: bool,
    escape: Escape,
    /// Echo typed characters (off while a password is typed).
    pub hidden: bool,
}

impl LineEditor {
    /// Takes one keystroke; what to echo is appended to `echo`.
    pub fn key(&mut self, byte: u8, echo: &mut Vec<u8>) -> Key {
        match (self.escape, byte) {
            (Escape::None, 0x1b) => {
                self.escape = Escape::Started;
                return Key::Edited;
            }
            (Escape::Started, b'[' | b'O') => {
                self.escape = Escape::Sequence;
                return Key::Edited;
            }
            (Escape::Started, _) => {
                self.escape = Escape::None;
                return Key::Edited;
            }
            (Escape::Sequence, 0x40..=0x7e) => {
                self.escape = Escape::None;
                return Key::Edited;
            }
            (Escape::Sequence, _) => return Key::Edited,
            (Escape::None, _) => {}
        }
        let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
        match byte {
            // A CR LF pair is one Enter.
            b'\n' if after_cr => Key::Edited,
            b'\r' | b'\n' => {
                echo.extend_from_slice(b"\r\n");
                let line = String::from_utf8_lossy(&self.line).into_owned();
                self.line.clear();
                Key::Line(line)
            }
            0x08 | 0x7f => {
                if self.line.pop().is_some() && !self.hidden {
                    echo.extend_from_slice(b"\x08 \x08");
                }
                Key::Edited
            }
            0x15 => {
                if !self.hidden {
                    for _ in 0..self.line.len() {
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                }
                self.line.clear();
                Key::Edited
            }
            0x03 => {
                echo.extend_from_slice(b"^C\r\n");
                self.line.clear();
                Key::Interrupt
            }
            b'\t' | 0x20..=0x7e => {
                let c = if byte == b'\t' { b' ' } else { byte };
                if self.line.len() < MAX_LINE {
                    self.line.push(c);
                    if !self.hidden {
                        echo.push(c);
                    }
                } else {
                    echo.push(0x07);
                }
                Key::Edited
            }
            // Other control bytes and non-ASCII: ignored, not echoed.
            _ => Key::Edited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(ed: &mut LineEditor, keys: &[u8]) -> (Vec<Key>, Vec<u8>) {
        let mut echo = Vec::new();
        let keys = keys
            .iter()
            .map(|&k| ed.key(k, &mut echo))
            .filter(|k| *k != Key::Edited)
            .collect();
        (keys, echo)
    }

    #[test]
    fn backspace_and_ctrl_u_edit_the_line_and_echo_erasures() {
        let mut ed = LineEditor::default();
        let (keys, echo) = typed(&mut ed, b"lisx\x7ft -l\r");
        assert_eq!(keys, vec![Key::Line("list -l".into())]);
        assert_eq!(echo, b"lisx\x08 \x08t -l\r\n");
        let (keys, echo) = typed(&mut ed, b"ab\x15when\r\n");
        assert_eq!(keys, vec![Key::Line("when".into())]);
        assert_eq!(echo, b"ab\x08 \x08\x08 \x08when\r\n");
    }

    #[test]
    fn ctrl_c_drops_the_line_and_hidden_input_is_not_echoed() {
        let mut ed = LineEditor::default();
        let (keys, _) = typed(&mut ed, b"remove 3\x03");
        assert_eq!(keys, vec![Key::Interrupt]);
        ed.hidden = true;
        let (keys, echo) = typed(&mut ed, b"s3cret\x7ft\n");
        assert_eq!(keys, vec![Key::Line("s3cret".into())]);
        assert_eq!(echo, b"\r\n");
    }

    #[test]
    fn lines_are_bounded_and_control_bytes_ignored() {
        let mut ed = LineEditor::default();
        let mut keys = vec![b'a'; MAX_LINE + 50];
        keys.extend_from_slice(b"\x01\x1b\xff\r");
        let (out, echo) = typed(&mut ed, &keys);
        assert_eq!(out, vec![Key::Line("a".repeat(MAX_LINE))]);
        assert_eq!(
            echo.len(),
            MAX_LINE + 50 + 2,
            "a bell for each key past the end"
        );
    }

    #[test]
    fn arrow_and_delete_keys_are_swallowed_whole() {
        let mut ed = LineEditor::default();
        let (keys, echo) = typed(&mut ed, b"li\x1b[A\x1b[3~\x1bOHst\r");
        assert_eq!(keys, vec![Key::Line("list".into())]);
        assert_eq!(echo, b"list\r\n");
    }
}
