//! Every contact with the operating system and the processor: the layer everything else stands on.
//!
//! # The contract of this layer
//!
//! - It imports nothing from the rest of the crate (the layer check in `tests/layers.rs` enforces
//!   it), so each file here can be read alone.
//! - Each function is a thin, typed wrapper over one syscall, one libc call or one assembly
//!   routine. Policy (when to map a stack, which greenlet to name in an overflow report, when a
//!   socket is ready) lives above, in `stack.rs` and `rt/`.
//! - Every `unsafe` block of the crate that touches libc or assembly is in this folder, except the
//!   few in `rt/` that dereference the hub's own raw pointers and call [`switch::switch`].
//! - Errors come back as `io::Error` from `errno` (the `syscall!` macro below); nothing here panics.
//!
//! | file | what |
//! | --- | --- |
//! | `switch.rs` | the register-context switch (`global_asm!` of `arch/*.s`) and fresh frames |
//! | `mmap.rs` | one anonymous mapping with a `PROT_NONE` guard page: stacks and the signal stack |
//! | `signal.rs` | `sigaction`, `sigaltstack`, `gettid`, `write(2)` to stderr, `abort` |
//! | `socket.rs` | the socket calls std does not offer in the needed form (`MSG_NOSIGNAL`, backlog, `SO_REUSEPORT`), and the hot stream reads and writes |
//! | `syscall.rs` | raw Linux system calls (x86_64 `syscall`, aarch64 `svc 0`) for those hot calls |
//! | `valgrind.rs` | valgrind client requests (feature `valgrind`) |

/// Calls a libc function and turns a `-1` result into `Err(io::Error::last_os_error())`.
///
/// `syscall!(fn_name(args..))` evaluates to `io::Result<ret type>`. The call itself is `unsafe`:
/// the macro must be used inside an `unsafe` block whose `// SAFETY:` comment covers the
/// arguments.
macro_rules! syscall {
    ($fn: ident ( $($arg: expr),* $(,)* ) ) => {{
        let res = libc::$fn($($arg, )*);
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

pub(crate) mod mmap;
pub(crate) mod signal;
pub(crate) mod socket;
pub(crate) mod switch;
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(crate) mod syscall;
pub(crate) mod valgrind;
