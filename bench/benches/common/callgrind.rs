//! Talking to callgrind from inside the benchmarked process, and reading its dump files.
//!
//! # Client requests
//!
//! A client request is a magic instruction sequence that does nothing on a real CPU and that
//! valgrind's JIT turns into a call into the core or the tool (protocol of `valgrind.h`):
//!
//! ```text
//!   args: [request, a1, a2, a3, a4, a5]      six machine words in memory
//!   x86_64:  rax = &args, rdx = default      rol rdi,3; rol rdi,13; rol rdi,61; rol rdi,51;
//!                                            xchg rbx,rbx                      -> result in rdx
//!   aarch64: x4  = &args, x3  = default      ror x12,#3; ror x12,#13; ror x12,#51; ror x12,#61;
//!                                            orr x10,x10,x10                   -> result in x3
//! ```
//!
//! Outside valgrind the result is the default. Request codes used here (valgrind 3.19 headers):
//! `RUNNING_ON_VALGRIND` = 0x1001 and `GDB_MONITOR_COMMAND` = 0x1202 (core, `valgrind.h`).
//!
//! # Why monitor commands, not `CALLGRIND_ZERO_STATS` / `CALLGRIND_DUMP_STATS_AT`
//!
//! callgrind's own requests (`callgrind.h`: tool base `'C' << 24 | 'T' << 16`, DUMP_STATS = +0,
//! ZERO_STATS = +1, TOGGLE_COLLECT = +2, DUMP_STATS_AT = +3) act on the **calling thread only**
//! when `--separate-threads=yes`: `callgrind/main.c` handles ZERO_STATS with
//! `zero_all_cost(True)` and DUMP_STATS_AT with `dump_profile(.., True)`, the `True` being
//! `only_current_thread`. The echo bench's window is marked by the main thread while the server
//! runs in another, so those requests would zero and dump the wrong thread. The monitor commands
//! `zero` and `dump <hint>` (what `callgrind_control` sends through vgdb) call the same functions
//! with `False`: every thread. `VALGRIND_MONITOR_COMMAND` delivers them from inside the program,
//! with no vgdb connection needed; it returns 0 when the command was recognised.

#![allow(dead_code)] // each bench uses a subset

use std::collections::HashMap;
use std::ffi::CStr;
use std::path::Path;

const RUNNING_ON_VALGRIND: usize = 0x1001;
const GDB_MONITOR_COMMAND: usize = 0x1202;

/// Performs client request `args[0]` with arguments `args[1..]`; returns `default` when not
/// running under valgrind.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn request(default: usize, args: &[usize; 6]) -> usize {
    let mut result = default;
    // SAFETY: on a real CPU the sequence rotates rdi by 128 bits in total (unchanged; declared
    // clobbered anyway) and exchanges rbx with itself; flags are clobbered (no preserves_flags).
    // Under valgrind it reads the six words at `args`, which are live for the call, and writes rdx;
    // the requests used here read at most a C string the caller keeps alive.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") result,
            in("rax") args.as_ptr(),
            inout("rdi") 0usize => _,
            options(nostack),
        );
    }
    result
}

/// Performs client request `args[0]` with arguments `args[1..]`; returns `default` when not
/// running under valgrind.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn request(default: usize, args: &[usize; 6]) -> usize {
    let mut result = default;
    // SAFETY: on a real CPU the sequence rotates x12 by 128 bits in total (unchanged; declared
    // clobbered anyway) and or-s x10 with itself. Under valgrind it reads the six words at `args`
    // (live for the call) and writes x3.
    unsafe {
        std::arch::asm!(
            "ror x12, x12, #3",
            "ror x12, x12, #13",
            "ror x12, x12, #51",
            "ror x12, x12, #61",
            "orr x10, x10, x10",
            inout("x3") result,
            in("x4") args.as_ptr(),
            inout("x12") 0usize => _,
            options(nostack),
        );
    }
    result
}

/// No client requests on other targets: never "under valgrind".
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn request(default: usize, _args: &[usize; 6]) -> usize {
    default
}

/// Whether this process runs under valgrind (any tool).
pub fn running_on_valgrind() -> bool {
    request(0, &[RUNNING_ON_VALGRIND, 0, 0, 0, 0, 0]) != 0
}

/// Sends a monitor command to the tool; panics if it is not recognised (not callgrind, or not
/// under valgrind at all: the default result 1 means "not recognised" too).
fn monitor(cmd: &CStr) {
    let r = request(1, &[GDB_MONITOR_COMMAND, cmd.as_ptr() as usize, 0, 0, 0, 0]);
    assert!(
        r == 0,
        "callgrind did not take the monitor command {cmd:?} (not running under \
         valgrind --tool=callgrind?)"
    );
}

/// Zeroes the cost counters of **every** thread (the cache simulator keeps its state).
pub fn zero_all_threads() {
    monitor(c"zero");
}

/// Dumps the counters of every thread since the last zero or dump, one file per thread with
/// `--separate-threads=yes`, their `trigger:` line ending in `hint`; then zeroes them.
pub fn dump_all_threads(hint: &CStr) {
    let mut cmd = b"dump ".to_vec();
    cmd.extend_from_slice(hint.to_bytes());
    cmd.push(0);
    monitor(CStr::from_bytes_with_nul(&cmd).unwrap());
}

/// The header and totals of one callgrind dump file.
#[derive(Debug, Default)]
pub struct Dump {
    /// valgrind's thread number (`thread:` line; 1 is the main thread), 0 if absent.
    pub thread: u32,
    /// What triggered the dump (`desc: Trigger:` line): `dump <hint>` for a monitor command.
    pub trigger: String,
    /// The other `desc:` lines (cache geometry, time range).
    pub desc: Vec<String>,
    /// Total of each event by name (`Ir`, `D1mr`, `sysCount`, ...): the `summary:` line, which
    /// is the thread's own counter. (The `totals:` line at the end sums the cost lines, and counts
    /// some `sysCount` twice: a system call is charged to its block and again as a "skipped" call.)
    pub events: HashMap<String, u64>,
}

impl Dump {
    /// The total of `event`, 0 if the dump has no such event.
    pub fn get(&self, event: &str) -> u64 {
        self.events.get(event).copied().unwrap_or(0)
    }
}

/// Reads the header and the totals of the callgrind dump at `path`.
pub fn parse_dump(path: &Path) -> std::io::Result<Dump> {
    let text = std::fs::read_to_string(path)?;
    let mut d = Dump::default();
    let mut names: Vec<String> = Vec::new();
    let mut summary: Option<Vec<u64>> = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("events:") {
            names = v.split_whitespace().map(str::to_string).collect();
        } else if let Some(v) = line.strip_prefix("thread:") {
            d.thread = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("desc: Trigger:") {
            d.trigger = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("desc:") {
            d.desc.push(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("summary:") {
            if summary.is_none() {
                summary = Some(
                    v.split_whitespace()
                        .map(|x| x.parse().unwrap_or(0))
                        .collect(),
                );
            }
        } else if line.starts_with("fn=") {
            break; // the header is over
        }
    }
    let values = summary.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: no summary: line", path.display()),
        )
    })?;
    d.events = names.into_iter().zip(values).collect();
    Ok(d)
}
