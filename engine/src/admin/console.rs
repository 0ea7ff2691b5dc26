//! `ethershelf console`: an interactive shelf console on the admin socket with history and
//! completion; the prompt reads `ethershelf shelf N> ` like Coraid's `SR shelf N> `.

use super::client;
use crate::worker::console::COMMANDS;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use std::path::{Path, PathBuf};

/// Completes command words at the start of the line.
struct CommandCompleter;

impl Completer for CommandCompleter {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let before = &line[..pos];
        if before.contains(' ') {
            return Ok((pos, Vec::new()));
        }
        let matches = COMMANDS
            .iter()
            .chain(["quit", "exit"].iter())
            .filter(|c| c.starts_with(before))
            .map(|c| c.to_string())
            .collect();
        Ok((0, matches))
    }
}

impl Hinter for CommandCompleter {
    type Hint = String;
}
impl Highlighter for CommandCompleter {}
impl Validator for CommandCompleter {}
impl Helper for CommandCompleter {}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ethershelf_history"))
}

/// Runs the console until `quit`, `exit` or end of input.
pub fn run(socket: &Path) -> Result<(), String> {
    let shelf = super::request(socket, "shelf")
        .map_err(|e| e.to_string())?
        .trim()
        .to_string();
    let mut rl: Editor<CommandCompleter, DefaultHistory> =
        Editor::new().map_err(|e| format!("cannot open the terminal: {e}"))?;
    rl.set_helper(Some(CommandCompleter));
    let history = history_path();
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    let prompt = format!("ethershelf shelf {shelf}> ");
    println!(
        "ethershelf console on {} ('help' lists commands, 'quit' leaves)",
        socket.display()
    );
    loop {
        let line = match rl.readline(&prompt) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.to_string()),
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let _ = rl.add_history_entry(line);
        if line == "quit" || line == "exit" {
            break;
        }
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        let outcome = client::run(socket, &words, |question| {
            matches!(
                rl.readline(question).as_deref().map(str::trim),
                Ok("y" | "Y" | "yes")
            )
        });
        match outcome {
            Ok(o) => print!("{}", o.output),
            Err(e) => println!("error: {e}"),
        }
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    Ok(())
}
