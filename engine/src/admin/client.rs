//! The admin socket's client side, shared by `ethershelf ctl` (one shot) and
//! `ethershelf console` (interactive): confirmation of destructive commands, and telling
//! success from failure in the answer.

use crate::worker::console::DESTRUCTIVE;
use std::path::Path;

/// The question Coraid shelves ask before a destructive command.
pub const CONFIRM_PROMPT: &str = "Enter 'y' for yes, 'n' for no. Continue? [n] ";

/// What came of one command.
pub struct Outcome {
    /// The text (or JSON) to print.
    pub output: String,
    /// The shelf refused or the command failed.
    pub failed: bool,
}

/// Does this command change or hide data (so it needs confirmation)?
pub fn is_destructive(words: &[String]) -> bool {
    words
        .first()
        .is_some_and(|w| DESTRUCTIVE.contains(&w.as_str()))
}

/// Did the shelf answer with a failure? Text answers start with `error:`; JSON answers
/// carry an `error` member.
pub fn answer_failed(answer: &str) -> bool {
    let a = answer.trim_start();
    a.starts_with("error:")
        || a.starts_with("usage:")
        || (a.starts_with('{')
            && serde_json::from_str::<serde_json::Value>(a)
                .ok()
                .is_some_and(|v| v.get("error").is_some()))
}

/// Runs `words` on the shelf at `socket`. A destructive command without `-f` is confirmed
/// through `confirm` first (it gets the question; `false` cancels).
pub fn run(
    socket: &Path,
    words: &[String],
    mut confirm: impl FnMut(&str) -> bool,
) -> Result<Outcome, String> {
    let mut words: Vec<String> = words.to_vec();
    if is_destructive(&words) && !words.iter().any(|w| w == "-f") {
        let question = format!(
            "'{}' changes what hosts see or clears data. {CONFIRM_PROMPT}",
            words.join(" ")
        );
        if !confirm(&question) {
            return Ok(Outcome {
                output: "cancelled\n".into(),
                failed: true,
            });
        }
        words.push("-f".into());
    }
    let answer = super::request(socket, &words.join(" ")).map_err(|e| e.to_string())?;
    Ok(Outcome {
        failed: answer_failed(&answer),
        output: answer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_recognised_in_text_and_json() {
        assert!(answer_failed("error: no LUN 3 on this shelf\n"));
        assert!(answer_failed("{\"error\":\"no LUN 3\"}\n"));
        assert!(!answer_failed("{\"ok\":true}\n"));
        assert!(!answer_failed("LUN 3 made\n"));
    }

    #[test]
    fn only_destructive_commands_ask() {
        let w = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(is_destructive(&w("remove 3")));
        assert!(is_destructive(&w("make 3 raid10 7.0-3")));
        assert!(!is_destructive(&w("list -l")));
        assert!(!is_destructive(&w("when")));
    }
}
