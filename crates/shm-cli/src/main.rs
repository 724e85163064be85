//! `shm`: every shared memory segment on this machine and who holds it,
//! queue inspection, cleanup after crashes, and a diagnosis of what commonly
//! breaks shared memory.
//!
//! Exit status: 0 success; 1 an error, printed on stderr as one line that
//! begins with `error:`; 2 a usage error (clap's). The command never panics
//! on runtime data: every failure becomes an `error:` line. See
//! `docs/cli.md` for the whole surface.
#![forbid(unsafe_code)]

mod demo;
mod doctor;
mod gc;
mod ls;
mod queue;
mod render;
mod segment_cmds;
mod top;

pub use queue::queue_stats;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shm_core::SegmentId;

/// A failure that ends the command with exit status 1, printed as
/// `error: MESSAGE`.
#[derive(Debug)]
pub struct CliError {
    /// One line saying what failed and why.
    pub message: String,
    /// Whether the message was already printed (the command reported each
    /// failure as it went and only the status is left).
    pub reported: bool,
}

impl CliError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            reported: false,
        }
    }

    /// The failures were already printed; exit 1 without another line.
    pub fn reported() -> Self {
        CliError {
            message: String::new(),
            reported: true,
        }
    }
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::new(e.to_string())
    }
}

/// What every subcommand returns.
pub type CliResult = Result<(), CliError>;

/// Writes `text` to stdout. A reader that went away (`shm ls | head`) is
/// not an error: the rest of the output is simply not wanted.
pub fn emit(text: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::new(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// Prints one `error: ...` line on stderr (for commands that go on after
/// a failure and exit 1 at the end).
pub fn error_line(text: &str) {
    let _ = writeln!(std::io::stderr(), "error: {}", text.replace('\n', " "));
}

/// Prints one `warning: ...` line on stderr.
pub fn warn(text: &str) {
    let _ = writeln!(std::io::stderr(), "warning: {text}");
}

/// Parses a size in bytes: plain digits, or with a `K`, `M`, `G` or `T`
/// suffix (powers of 1024, optionally followed by `iB` or `B`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!(
            "{s:?} is not a size: expected bytes, optionally with K, M, G or T"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} does not fit in 64 bits"))?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "unknown size suffix {suffix:?} in {s:?}: use K, M, G or T"
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} does not fit in 64 bits"))
}

/// Parses permission bits in octal: `600`, `0600` or `0o600`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("{s:?} is not an octal mode such as 600 or 0644"))?;
    if mode > 0o777 {
        return Err(format!(
            "mode {s} has bits beyond 0777: only permission bits are allowed"
        ));
    }
    Ok(mode)
}

/// Parses a segment name: `/NAME`, `sysv:KEY` or `sysv-id:ID`.
fn parse_segment(s: &str) -> Result<SegmentId, String> {
    s.parse::<SegmentId>().map_err(|e| e.to_string())
}

#[derive(Parser, Debug)]
#[command(
    name = "shm",
    version,
    about = "Shared memory segments on this machine: who holds them, queues, cleanup, diagnosis",
    long_about = "Shared memory segments on this machine: who holds them, queues, cleanup, diagnosis.\n\n\
                  Segments are named /NAME (POSIX), sysv:KEY (System V by key, decimal or 0x hex) \
                  or sysv-id:ID (System V by shmid).\n\n\
                  Exit status: 0 success, 1 error (one `error:` line on stderr), 2 usage error."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List every segment on the machine, ours or not, with the processes
    /// that map it; with --all, every other shared memory object too.
    Ls(LsArgs),
    /// Show one segment; for a queue, its state too.
    Stat {
        /// The segment: /NAME, sysv:KEY or sysv-id:ID.
        #[arg(value_parser = parse_segment)]
        seg: SegmentId,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Create a raw segment (zero-filled, no header) and leave it in place.
    Create {
        /// The segment: /NAME or sysv:KEY.
        #[arg(value_parser = parse_segment)]
        seg: SegmentId,
        /// Size in bytes; K, M, G and T suffixes are powers of 1024.
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Permission bits, octal.
        #[arg(long, value_parser = parse_mode, default_value = "600")]
        mode: u32,
    },
    /// Remove segments. Processes that map them keep their mapping.
    Rm {
        /// The segments: /NAME, sysv:KEY or sysv-id:ID.
        #[arg(required = true, value_parser = parse_segment)]
        segs: Vec<SegmentId>,
    },
    /// Remove segments that no process holds and whose creator is gone.
    ///
    /// POSIX segments of this library: nothing maps them and the creator
    /// recorded in the header is dead. System V: nattch is 0 and the creator
    /// (cpid) is dead. Foreign POSIX segments (no header of this library)
    /// that nothing maps are listed as "foreign, unattached" and removed
    /// only with --all.
    Gc {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Also remove foreign POSIX segments that nothing maps.
        #[arg(long)]
        all: bool,
        /// Print one JSON array of the candidates.
        #[arg(long)]
        json: bool,
        /// Consider only these segments (default: every segment).
        #[arg(value_parser = parse_segment)]
        segs: Vec<SegmentId>,
    },
    /// Live view of queues: messages/s in and out, fill level, blocked
    /// sends and receives, producers, consumers, attached handles and
    /// recoveries. Redraws in place on a terminal; piped, one line per
    /// queue per interval.
    Top {
        /// The queues to watch (default: every queue on the machine).
        #[arg(value_parser = parse_segment)]
        queues: Vec<SegmentId>,
        /// Time between samples, in milliseconds.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
        interval_ms: u64,
        /// Stop after this many samples (default: until interrupted).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        iterations: Option<u64>,
        /// One line per queue per interval even on a terminal.
        #[arg(long)]
        lines: bool,
        /// No header line (line output).
        #[arg(short, long)]
        noheadings: bool,
    },
    /// Check what commonly breaks shared memory on this machine.
    Doctor {
        /// Print one JSON array of the checks.
        #[arg(long)]
        json: bool,
    },
    /// Create a queue, and send and receive lines through it.
    Queue {
        #[command(subcommand)]
        cmd: QueueCmd,
    },
    /// Print a shell completion script: `shm completions bash >
    /// /usr/share/bash-completion/completions/shm`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `shm man > shm.1; man -l shm.1`.
    Man {
        /// Write shm.1 and a page per subcommand (shm-ls.1, ...) into DIR
        /// instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Stream messages between two processes through a queue, live.
    Demo {
        /// How many 64-byte messages to stream.
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        /// How many ping-pong round trips to time afterwards.
        #[arg(long, default_value_t = 5_000)]
        pings: u64,
    },
    /// The producer process of `shm demo`.
    #[command(name = "__demo-producer", hide = true)]
    DemoProducer(DemoRole),
    /// The consumer process of `shm demo`.
    #[command(name = "__demo-consumer", hide = true)]
    DemoConsumer(DemoRole),
}

/// Arguments of `shm ls`.
#[derive(clap::Args, Debug)]
struct LsArgs {
    /// Print one JSON array instead of a table (with --totals, one object).
    #[arg(long)]
    json: bool,
    /// Only POSIX segments (/dev/shm; with --all, removed-but-mapped ones too).
    #[arg(long, conflicts_with = "sysv")]
    posix: bool,
    /// Only System V segments.
    #[arg(long)]
    sysv: bool,
    /// All shared memory: also shared anonymous mappings (/dev/zero),
    /// memfds and POSIX segments removed while mapped, by device and inode,
    /// with RSS and SWAP (from /proc/PID/smaps) for every object.
    #[arg(short, long)]
    all: bool,
    /// Only objects owned by USER (a name or a uid; an unnamed object
    /// belongs to the user of its lowest holder PID).
    #[arg(short, long, value_name = "USER")]
    user: Option<String>,
    /// Only what process PID maps, named or not (implies --all).
    #[arg(short, long, value_name = "PID")]
    pid: Option<u32>,
    /// Only objects of this type (posix, sysv, anon, hugepage, memfd,
    /// deleted) or kind (queue, ...).
    #[arg(short, long, value_name = "WORD")]
    kind: Option<String>,
    /// Only names matching this pattern (`*` and `?`, e.g. '/psm_*',
    /// 'memfd:*').
    #[arg(value_name = "PATTERN")]
    pattern: Option<String>,
    /// Columns to show, comma-separated (see --list-columns).
    #[arg(short, long, value_name = "COLUMNS")]
    output: Option<String>,
    /// Print the available columns and exit.
    #[arg(long)]
    list_columns: bool,
    /// No header line.
    #[arg(short, long)]
    noheadings: bool,
    /// Unaligned: one space between cells (spaces in a cell as \x20).
    #[arg(short, long)]
    raw: bool,
    /// Sizes in bytes, not K, M, G.
    #[arg(short, long)]
    bytes: bool,
    /// Sort by this column (numerically for sizes, ids and times).
    #[arg(long, value_name = "COLUMN")]
    sort: Option<String>,
    /// Totals per user and for the machine instead of the rows (after the
    /// filters).
    #[arg(long)]
    totals: bool,
}

/// Arguments of the demo's processes.
#[derive(clap::Args, Debug)]
struct DemoRole {
    #[arg(value_parser = parse_segment)]
    queue: SegmentId,
    #[arg(value_parser = parse_segment)]
    pong: SegmentId,
    messages: u64,
    pings: u64,
}

#[derive(Subcommand, Debug)]
enum QueueCmd {
    /// Create a queue and leave it in place.
    Create {
        /// The queue: /NAME.
        #[arg(value_parser = parse_segment)]
        queue: SegmentId,
        /// How many messages it holds.
        #[arg(long)]
        capacity: u64,
        /// The largest message, in bytes (K, M, G suffixes allowed).
        #[arg(long, value_parser = parse_size)]
        slot_size: u64,
        /// Permission bits, octal.
        #[arg(long, value_parser = parse_mode, default_value = "600")]
        mode: u32,
    },
    /// Send every line of standard input, without its newline, as one
    /// message (or NUL-separated records, or length-prefixed frames); a
    /// message longer than the slot is refused, never truncated.
    Send {
        /// The queue: /NAME.
        #[arg(value_parser = parse_segment)]
        queue: SegmentId,
        /// Give up when the queue stays full this long.
        #[arg(long)]
        timeout_ms: Option<u64>,
        #[command(flatten)]
        framing: FramingArgs,
    },
    /// Print each message and a newline. Ends after --count messages, or
    /// once every producer that joined has left and the queue is drained.
    Recv {
        /// The queue: /NAME.
        #[arg(value_parser = parse_segment)]
        queue: SegmentId,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Give up when no message arrives for this long.
        #[arg(long)]
        timeout_ms: Option<u64>,
        #[command(flatten)]
        framing: FramingArgs,
    },
    /// Print the next messages without taking them (read-only; a racy
    /// snapshot: a receiver may take them the moment after).
    Peek {
        /// The queue: /NAME.
        #[arg(value_parser = parse_segment)]
        queue: SegmentId,
        /// How many messages to show, from the head.
        #[arg(long, default_value_t = 1)]
        count: u64,
        #[command(flatten)]
        framing: FramingArgs,
    },
    /// Close the queue: sends fail from now on; the receivers already
    /// attached drain what is left, then end.
    Close {
        /// The queue: /NAME.
        #[arg(value_parser = parse_segment)]
        queue: SegmentId,
    },
}

/// How messages are delimited on standard input or output.
#[derive(clap::Args, Debug)]
struct FramingArgs {
    /// Messages are separated by NUL bytes (same as --framing nul).
    #[arg(short = '0', long = "null", conflicts_with = "framing")]
    null: bool,
    /// lines (default), nul, or length: each message preceded by its
    /// length as a 4-byte big-endian integer.
    #[arg(long, value_enum)]
    framing: Option<queue::Framing>,
}

impl FramingArgs {
    fn get(&self) -> queue::Framing {
        if self.null {
            queue::Framing::Nul
        } else {
            self.framing.unwrap_or_default()
        }
    }
}

fn run(cmd: Cmd) -> CliResult {
    match cmd {
        Cmd::Ls(a) => {
            if a.list_columns {
                let text: String = ls::COLUMNS
                    .iter()
                    .map(|(c, what)| format!("{c:<8} {what}\n"))
                    .collect();
                return emit(&text);
            }
            ls::ls(ls::LsOpts {
                json: a.json,
                posix: a.posix,
                sysv: a.sysv,
                all: a.all,
                user: a.user,
                pid: a.pid,
                kind: a.kind,
                pattern: a.pattern,
                output: a.output,
                noheadings: a.noheadings,
                raw: a.raw,
                bytes: a.bytes,
                sort: a.sort,
                totals: a.totals,
            })
        }
        Cmd::Stat { seg, json } => segment_cmds::stat(&seg, json),
        Cmd::Create { seg, size, mode } => segment_cmds::create(&seg, size, mode),
        Cmd::Rm { segs } => segment_cmds::rm(&segs),
        Cmd::Gc {
            dry_run,
            all,
            json,
            segs,
        } => gc::gc(dry_run, all, json, &segs),
        Cmd::Doctor { json } => doctor::doctor(json),
        Cmd::Top {
            queues,
            interval_ms,
            iterations,
            lines,
            noheadings,
        } => top::top(top::TopOpts {
            queues,
            interval: Duration::from_millis(interval_ms),
            iterations,
            lines,
            noheadings,
        }),
        Cmd::Queue { cmd } => match cmd {
            QueueCmd::Create {
                queue,
                capacity,
                slot_size,
                mode,
            } => queue::create(&queue, capacity, slot_size, mode),
            QueueCmd::Send {
                queue,
                timeout_ms,
                framing,
            } => queue::send(&queue, timeout_ms.map(Duration::from_millis), framing.get()),
            QueueCmd::Recv {
                queue,
                count,
                timeout_ms,
                framing,
            } => queue::recv(
                &queue,
                count,
                timeout_ms.map(Duration::from_millis),
                framing.get(),
            ),
            QueueCmd::Peek {
                queue,
                count,
                framing,
            } => queue::peek(&queue, count, framing.get()),
            QueueCmd::Close { queue } => queue::close(&queue),
        },
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "shm", &mut text);
            emit(&String::from_utf8_lossy(&text))
        }
        Cmd::Man { dir: Some(dir) } => {
            use clap::CommandFactory;
            clap_mangen::generate_to(Cli::command(), &dir).map_err(|e| {
                CliError::new(format!(
                    "cannot write the man pages into {}: {e}",
                    dir.display()
                ))
            })?;
            emit(&format!("wrote the man pages into {}\n", dir.display()))
        }
        Cmd::Man { dir: None } => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut text)
                .map_err(|e| CliError::new(format!("cannot render the man page: {e}")))?;
            emit(&String::from_utf8_lossy(&text))
        }
        Cmd::Demo { messages, pings } => demo::demo(messages, pings),
        Cmd::DemoProducer(r) => demo::producer(&r.queue, &r.pong, r.messages, r.pings),
        Cmd::DemoConsumer(r) => demo::consumer(&r.queue, &r.pong, r.messages, r.pings),
    }
}

fn main() -> ExitCode {
    // Usage errors exit with status 2 from here (clap's default).
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.reported {
                let line = e.message.replace('\n', " ");
                let _ = writeln!(std::io::stderr(), "error: {line}");
            }
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes_and_refuse_garbage() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("3T"), Ok(3 << 40));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in [
            "",
            "K",
            "-1",
            "1.5M",
            "4X",
            "99999999999999999999",
            "16777216T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_parse_in_octal_and_refuse_other_bits() {
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("0o640"), Ok(0o640));
        for bad in ["", "8", "rw", "1777", "-600"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
