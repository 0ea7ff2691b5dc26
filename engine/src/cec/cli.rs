//! `ethershelf cec` as a command: probe, pick a shelf, then a person's session or one
//! scripted command.

use super::client::{interactive, probe, run_command, Connection, Offer, Script};
use super::socket::CecSocket;
use crate::wire::MacAddr;
use std::time::Duration;

/// What `ethershelf cec` was asked to do.
pub struct Options {
    /// Interface on the storage segment.
    pub iface: String,
    /// Only list the shelves that answer.
    pub probe: bool,
    /// Connect to this shelf number.
    pub shelf: Option<u32>,
    /// Connect to this address.
    pub mac: Option<MacAddr>,
    /// Escape key byte.
    pub escape: u8,
    /// How long to wait for offers and the handshake.
    pub wait: Duration,
    /// Run this one command and print its output.
    pub command: Option<String>,
    /// Password for scripted use.
    pub password: Option<String>,
    /// Answer confirmation questions with yes.
    pub yes: bool,
}

/// Runs `ethershelf cec`. `Ok(false)`: a scripted command failed on the shelf.
pub fn main(opts: &Options) -> Result<bool, String> {
    let socket = CecSocket::open(&opts.iface).map_err(|e| e.to_string())?;
    let offers = probe(&socket, opts.wait).map_err(|e| e.to_string())?;
    if opts.probe {
        println!("{:<6} {:<18} DESCRIPTION", "SHELF", "EA");
        for o in &offers {
            let shelf = o.shelf.map_or("?".to_string(), |s| s.to_string());
            println!("{shelf:<6} {:<18} {}", o.mac.to_string(), o.description);
        }
        if offers.is_empty() {
            eprintln!("no shelf answered on {} within {:?}", opts.iface, opts.wait);
        }
        return Ok(true);
    }
    let chosen: Vec<&Offer> = offers
        .iter()
        .filter(|o| opts.shelf.is_none_or(|s| o.shelf == Some(s)))
        .filter(|o| opts.mac.is_none_or(|m| o.mac == m))
        .collect();
    let server = match chosen.as_slice() {
        [one] => one.mac,
        [] => {
            return Err(format!(
            "no shelf{} answered on {} (is its console over Ethernet on, and this host allowed?)",
            opts.shelf.map_or(String::new(), |s| format!(" {s}")),
            opts.iface
        ))
        }
        [first, ..] if opts.shelf.is_some() || opts.mac.is_some() => first.mac,
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|o| {
                    format!(
                        "{} ({})",
                        o.shelf.map_or("?".into(), |s| s.to_string()),
                        o.mac
                    )
                })
                .collect();
            return Err(format!(
                "several shelves answer: {}; pick one with -s SHELF or -m MAC",
                list.join(", ")
            ));
        }
    };
    let mut conn = Connection::open(&socket, server, opts.wait).map_err(|e| e.to_string())?;
    match &opts.command {
        Some(command) => {
            let output = run_command(
                &mut conn,
                &Script {
                    command,
                    password: opts.password.as_deref(),
                    yes: opts.yes,
                    timeout: Duration::from_secs(60),
                },
            )
            .map_err(|e| e.to_string())?;
            print!("{}", output.text);
            conn.close();
            Ok(!output.failed && !output.cancelled)
        }
        None => {
            eprintln!(
                "connected to {server}; escape is Ctrl-{} then q to quit\r",
                (opts.escape | 0x40) as char
            );
            interactive(&mut conn, opts.escape).map_err(|e| e.to_string())?;
            Ok(true)
        }
    }
}
