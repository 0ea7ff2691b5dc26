//! The `ethershelf` command: serve a shelf from a YAML file, check a file, or export one
//! file vblade-style.

use clap::{Parser, Subcommand};
use ethershelf_config::{
    Backend, Config, FileSpec, Lun, MetricsListen, Port, PortMode, RebuildRates, WriteCache,
    DEFAULT_BUFFER_COUNT,
};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ethershelf: an ATA-over-Ethernet (AoE) storage shelf.
///
/// Exports files and block devices as AoE LUNs (e<shelf>.<slot>) on one or more Ethernet
/// ports. Writes are acknowledged only once stable unless a LUN opts into write-back.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the shelf described by a YAML file until SIGINT/SIGTERM.
    Serve {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Serve on these interfaces instead of the file's ports (repeatable).
        #[arg(short, long = "interface", value_name = "IFACE")]
        interfaces: Vec<String>,
        /// Frame I/O of every port, overriding the file: auto (AF_XDP where it works, else
        /// AF_PACKET), xdp or packet.
        #[arg(long, value_name = "MODE")]
        mode: Option<PortMode>,
        /// Start RAID-10 arrays whose members diverged (split brain: each side ran without
        /// the other). The side with the newest metadata is kept; the other side's members
        /// are rebuilt from it and the writes they took since the split are lost.
        #[arg(long)]
        force_assemble: bool,
    },
    /// Validate a configuration file (and that its LUN files can be opened); print a summary.
    Check {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run one console command on a running shelf, e.g. `ethershelf ctl list -l`
    /// (`ethershelf ctl help` lists them). Destructive commands (make, offline, remove,
    /// eject) ask for confirmation unless -f is given. Exit status 1 when the shelf refuses.
    Ctl {
        /// The shelf's configuration file (to find its admin socket).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The admin socket (default: the configuration's, else /run/ethershelf/admin.sock).
        #[arg(short, long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
        /// Print the answer as JSON (for scripts).
        #[arg(long)]
        json: bool,
        /// The command and its arguments, e.g. `list -l`, `when`, `make 3 raid10 7.0-3`.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Open the interactive shelf console (history, completion; prompt `ethershelf shelf N> `).
    Console {
        /// The shelf's configuration file (to find its admin socket).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The admin socket (default: the configuration's, else /run/ethershelf/admin.sock).
        #[arg(short, long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// The shelf console over Ethernet (Coraid's CEC, EtherType 0xBCBC), from any host of
    /// the storage segment, even a shelf without IP: `-p` lists the shelves that answer;
    /// otherwise connects (to the only one, or to `-s SHELF` / `-m MAC`). In a session,
    /// the escape key (Ctrl-\ by default) then `q` quits. `--command` runs one console
    /// command and prints its output (for scripts; exit status 1 when the shelf refuses).
    /// Run it only on an interface of the storage segment.
    Cec {
        /// List the shelves that answer and stop.
        #[arg(short = 'p', long)]
        probe: bool,
        /// Connect to this shelf number.
        #[arg(short, long, value_name = "SHELF")]
        shelf: Option<u32>,
        /// Connect to the shelf with this Ethernet address.
        #[arg(short, long, value_name = "MAC")]
        mac: Option<ethershelf::wire::MacAddr>,
        /// Escape key: Ctrl and this key (a letter, or \ ] [ ^ _).
        #[arg(short, long, default_value = "\\", value_parser = ethershelf::cec::client::parse_escape)]
        escape: u8,
        /// Seconds to wait for offers and for the connection.
        #[arg(short, long, default_value_t = 2.0)]
        wait: f64,
        /// Run this console command, print its output and leave.
        #[arg(long, value_name = "LINE")]
        command: Option<String>,
        /// The console password for --command (else the ETHERSHELF_CEC_PASSWORD variable).
        #[arg(long)]
        password: Option<String>,
        /// Answer yes when --command asks for confirmation (make, remove...).
        #[arg(short, long)]
        yes: bool,
        /// The interface on the storage segment.
        iface: String,
    },
    /// Appliance boot step: write systemd-networkd files from the YAML (the management
    /// interface with its address, AoE ports up with none) into DIR.
    #[command(hide = true)]
    ApplianceNetwork {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Where to write the .network files.
        #[arg(long, value_name = "DIR", default_value = "/run/systemd/network")]
        dir: PathBuf,
    },
    /// Export one file like vblade: `ethershelf export [-r] SHELF SLOT IFACE FILE`.
    Export {
        /// Read-only export (writes fail with ATA ABRT).
        #[arg(short = 'r', long)]
        read_only: bool,
        /// Cap the sectors per frame (the interface MTU caps it too).
        #[arg(long, value_name = "N")]
        mtu_sectors: Option<u8>,
        /// Acknowledge writes before they are stable; FLUSH CACHE syncs.
        #[arg(long)]
        writeback: bool,
        /// Do not use O_DIRECT.
        #[arg(long)]
        buffered: bool,
        /// Frame I/O: auto (AF_XDP where it works, else AF_PACKET), xdp or packet.
        #[arg(long, value_name = "MODE", default_value = "auto")]
        mode: PortMode,
        /// Where the config string, mask and reservations persist.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/ethershelf")]
        state_dir: PathBuf,
        /// Shelf number (AoE major), 0..65534.
        shelf: u16,
        /// Slot number (AoE minor), 0..254.
        slot: u8,
        /// Interface to serve on.
        iface: String,
        /// File or block device to export.
        file: PathBuf,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ETHERSHELF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

/// An error already explained on stdout: exit 1 without another message.
const QUIET_FAILURE: &str = "\u{0}quiet";

/// The admin socket: given, else the configuration's, else the default.
fn admin_socket(socket: Option<PathBuf>, config: Option<PathBuf>) -> Result<PathBuf, String> {
    Ok(match (socket, config) {
        (Some(s), _) => s,
        (None, Some(c)) => load(&c)?.admin_socket,
        (None, None) => PathBuf::from(ethershelf_config::DEFAULT_ADMIN_SOCKET),
    })
}

fn load(path: &std::path::Path) -> Result<Config, String> {
    ethershelf_config::load(path).map_err(|e| e.to_string())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            config,
            interfaces,
            mode,
            force_assemble,
        } => {
            let mut cfg = load(&config)?;
            cfg.force_assemble = force_assemble;
            if !interfaces.is_empty() {
                let mode = cfg.ports.first().map(|p| p.mode).unwrap_or(PortMode::Auto);
                cfg.ports = interfaces
                    .into_iter()
                    .map(|interface| Port {
                        interface,
                        mode,
                        max_sectors: None,
                    })
                    .collect();
            }
            if let Some(mode) = mode {
                for p in &mut cfg.ports {
                    p.mode = mode;
                }
            }
            tracing::info!(config = %config.display(), version = env!("CARGO_PKG_VERSION"), "ethershelf starting");
            ethershelf::shelf::serve(&cfg, Some(&config)).map_err(|e| e.to_string())
        }
        Command::Check { config } => {
            let cfg = load(&config)?;
            let lines = ethershelf::shelf::check_luns(&cfg).map_err(|e| e.to_string())?;
            println!(
                "{}: OK: shelf {}, {} port(s), {} LUN(s)",
                config.display(),
                cfg.shelf,
                cfg.ports.len(),
                cfg.luns.len()
            );
            for l in lines {
                println!("  {l}");
            }
            if cfg.luns.is_empty() {
                println!(
                    "  no LUNs configured: serving nothing; edit {}",
                    config.display()
                );
            }
            Ok(())
        }
        Command::Ctl {
            config,
            socket,
            force,
            json,
            mut command,
        } => {
            let path = admin_socket(socket, config)?;
            if force {
                command.push("-f".into());
            }
            if json {
                command.push("--json".into());
            }
            let outcome = ethershelf::admin::client::run(&path, &command, |question| {
                use std::io::{BufRead, IsTerminal, Write};
                if !std::io::stdin().is_terminal() {
                    eprintln!(
                        "ethershelf: '{}' needs confirmation: add -f (no terminal to ask on)",
                        command.join(" ")
                    );
                    return false;
                }
                eprint!("{question}");
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                let _ = std::io::stdin().lock().read_line(&mut answer);
                matches!(answer.trim(), "y" | "Y" | "yes")
            })?;
            print!("{}", outcome.output);
            if outcome.failed {
                return Err(QUIET_FAILURE.into());
            }
            Ok(())
        }
        Command::Console { config, socket } => {
            let path = admin_socket(socket, config)?;
            ethershelf::admin::console::run(&path)
        }
        Command::ApplianceNetwork { config, dir } => {
            let cfg = ethershelf_config::load(&config).map_err(|e| e.to_string())?;
            let written = ethershelf::appliance::write_networkd(&cfg, &dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            for name in written {
                println!("{}", dir.join(name).display());
            }
            Ok(())
        }
        Command::Cec {
            probe,
            shelf,
            mac,
            escape,
            wait,
            command,
            password,
            yes,
            iface,
        } => {
            if !(wait.is_finite() && wait > 0.0 && wait <= 60.0) {
                return Err(format!("--wait {wait}: give 0 < seconds <= 60"));
            }
            let opts = ethershelf::cec::cli::Options {
                iface,
                probe,
                shelf,
                mac,
                escape,
                wait: std::time::Duration::from_secs_f64(wait),
                command,
                password: password.or_else(|| std::env::var("ETHERSHELF_CEC_PASSWORD").ok()),
                yes,
            };
            match ethershelf::cec::cli::main(&opts)? {
                true => Ok(()),
                false => Err(QUIET_FAILURE.into()),
            }
        }
        Command::Export {
            read_only,
            mtu_sectors,
            writeback,
            buffered,
            mode,
            state_dir,
            shelf,
            slot,
            iface,
            file,
        } => {
            if shelf == 0xFFFF || shelf == 0xFFF {
                return Err(format!(
                    "shelf {shelf} cannot be used: pick 0..65534 other than 4095"
                ));
            }
            if slot == 0xFF {
                return Err("slot 255 is the broadcast slot: pick 0..254".into());
            }
            if mtu_sectors == Some(0) {
                return Err("--mtu-sectors must be at least 1".into());
            }
            let cfg = Config {
                shelf,
                ports: vec![Port {
                    interface: iface,
                    mode,
                    max_sectors: mtu_sectors,
                }],
                admin_socket: state_dir.join(format!("admin-{shelf}.{slot}.sock")),
                metrics: MetricsListen::Off,
                cpus: vec![],
                workers: None,
                sqpoll: false,
                force_assemble: false,
                cec: Default::default(),
                management: None,
                state_dir,
                buffer_count: DEFAULT_BUFFER_COUNT,
                disks: vec![],
                disks_auto: false,
                spares: vec![],
                rebuild: RebuildRates::default(),
                luns: vec![Lun {
                    slot,
                    backend: Backend::File(FileSpec {
                        path: file,
                        offset: 0,
                        length: None,
                        direct: !buffered,
                        create: false,
                    }),
                    read_only,
                    write_cache: if writeback {
                        WriteCache::Writeback
                    } else {
                        WriteCache::Writethrough
                    },
                    mask: vec![],
                    access: Default::default(),
                }],
                access: Default::default(),
            };
            ethershelf::shelf::serve(&cfg, None).map_err(|e| e.to_string())
        }
    }
}

fn main() -> ExitCode {
    let cli: Cli = ethershelf::docs::parse("8");
    init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e == QUIET_FAILURE => ExitCode::FAILURE,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ethershelf: error: {e}");
            ExitCode::FAILURE
        }
    }
}
