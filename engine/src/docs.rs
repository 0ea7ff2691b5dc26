//! Man pages and shell completions made from a command's clap definition, for packaging
//! (`deploy/package.sh`). The command line stays the one source of truth: each binary adds
//! the hidden `write-docs DIR` subcommand to its own `clap::Command` at parse time, and the
//! pages and completions are made from the command without it, so they never mention it.

use clap::Command;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The hidden subcommand's name.
pub const WRITE_DOCS: &str = "write-docs";

/// `cmd` with the hidden `write-docs DIR` subcommand added (absent from --help).
pub fn with_write_docs(cmd: Command) -> Command {
    cmd.subcommand(
        Command::new(WRITE_DOCS)
            .hide(true)
            .about("Write man pages and shell completions into DIR (for packaging)")
            .arg(
                clap::Arg::new("dir")
                    .value_name("DIR")
                    .required(true)
                    .value_parser(clap::value_parser!(PathBuf)),
            ),
    )
}

/// Parses the command line as `C::parse()` would, except that `write-docs DIR` writes the
/// docs of `C` (man pages in `section`) into DIR, prints the files made and exits.
pub fn parse<C: clap::Parser>(section: &str) -> C {
    let matches = with_write_docs(C::command()).get_matches();
    if let Some((WRITE_DOCS, sub)) = matches.subcommand() {
        let dir = sub.get_one::<PathBuf>("dir").expect("DIR is required");
        match write_docs(C::command(), section, dir) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!("{}: error: {WRITE_DOCS}: {e}", C::command().get_name());
                std::process::exit(1);
            }
        }
    }
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut C::command()).exit())
}

/// Writes into `dir`: a man page for `cmd` and one per visible subcommand (`NAME-SUB`), all
/// in `section`, and bash, zsh and fish completions. Returns the files written.
pub fn write_docs(cmd: Command, section: &str, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let name = cmd.get_name().to_owned();
    let manual = match section {
        "8" => "System Administration",
        _ => "User Commands",
    };
    let mut pages = vec![cmd.clone()];
    pages.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    let mut written = Vec::new();
    for page in pages {
        let man = clap_mangen::Man::new(page)
            .section(section)
            .manual(manual)
            .source(format!("{name} {}", cmd.get_version().unwrap_or_default()));
        written.push(man.generate_to(dir)?);
    }
    for (shell, file) in [
        (clap_complete::Shell::Bash, name.clone()),
        (clap_complete::Shell::Zsh, format!("_{name}")),
        (clap_complete::Shell::Fish, format!("{name}.fish")),
    ] {
        let path = dir.join(file);
        let mut out = std::fs::File::create(&path)?;
        clap_complete::generate(shell, &mut cmd, name.clone(), &mut out);
        out.flush()?;
        written.push(path);
    }
    Ok(written)
}
