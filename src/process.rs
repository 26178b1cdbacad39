//! Child processes whose waits and pipes park only the calling greenlet (gevent's
//! `gevent.subprocess`, tokio's `tokio::process`), with `std::process`'s API.
//!
//! ```
//! use std::io::Read;
//! use greenhub::{hub, process::{Command, Stdio}};
//!
//! hub::run(|| {
//!     // was: use std::process::{Command, Stdio};
//!     let mut child = Command::new("echo").arg("hello").stdout(Stdio::piped()).spawn()?;
//!     let mut out = String::new();
//!     child.stdout.take().unwrap().read_to_string(&mut out)?; // parks this greenlet only
//!     assert!(child.wait()?.success());                      // so does this
//!     assert_eq!(out, "hello\n");
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`Command`] has `std::process::Command`'s builder methods (and the Unix `CommandExt` ones
//! greenhub can forward: `uid`, `gid`, `process_group`, `arg0`, `pre_exec`); [`Stdio`],
//! [`ExitStatus`], [`Output`] (and `exit`, `abort`, `id`, `ExitCode`, re-exported) *are* std's.
//! Porting code is a change of the `use` line.
//! `spawn` itself runs on the calling thread (a fork/exec is short and std waits for the `exec` to
//! report success); everything that can take long parks only the caller: [`Child::wait`],
//! [`Child::wait_timeout`], [`Child::wait_with_output`], [`Command::output`], [`Command::status`],
//! and reads and writes of [`ChildStdin`], [`ChildStdout`], [`ChildStderr`].
//!
//! # How an exit is noticed
//!
//! No thread is held per child, and `SIGCHLD` is left alone (the program may use it, or not):
//!
//! - **pidfd** (Linux 5.3+): right after `spawn`, `pidfd_open(pid)` gives a descriptor that
//!   becomes readable when the child exits; it is registered with the hub like a socket, and a
//!   waiting greenlet parks on it, then collects the status with `waitpid(pid, WNOHANG)`.
//!   Opening it right after the spawn is race-free: the pid cannot be reused before the child is
//!   reaped, and only this `Child` reaps it (unless the program itself reaps every child with
//!   `waitpid(-1)`, which would break `std::process` as well).
//! - **Fallback** (no pidfd: an older kernel, a seccomp filter, no descriptors left): the waiting
//!   greenlet polls `waitpid(pid, WNOHANG)` on a timer, sleeping 1 ms, then doubling up to 50 ms
//!   between polls. An exit is noticed within that backoff.
//!
//! # Dropping a `Child`, killing its greenlet
//!
//! As with std, dropping a [`Child`] (also by killing the greenlet that owns it, or a panic
//! unwinding through it) does **not** kill the process: it runs on, with its pipes closed on our
//! side. Unlike std, it is not left a zombie: a `Child` dropped before its exit was collected is
//! handed to the process-wide **reaper**, one background thread started on demand, which waits
//! for every such orphan's pidfd (or polls, without pidfds) and reaps it; the thread exits when it
//! has no orphan left. Kill first ([`Child::kill`]) if the process should not outlive its
//! `Child`.

#![deny(unsafe_code)]

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// std's own types and functions, so `use greenhub::process::{self, …}` ports as a whole.
pub use std::process::{
    abort, exit, id, CommandArgs, CommandEnvs, ExitCode, ExitStatus, Output, Stdio, Termination,
};

use crate::io::{PipeReader, PipeWriter};
use crate::reactor::{Dir, OnTimeout, Registered};
use crate::rt::{WaitOn, Wake};

mod reaper;

/// A process builder: `std::process::Command` whose `spawn`ed [`Child`] waits cooperatively.
///
/// Unset stdio follows std's defaults: inherited for [`spawn`](Self::spawn) and
/// [`status`](Self::status); for [`output`](Self::output), stdout and stderr are captured and
/// stdin is null.
///
/// # Examples
///
/// ```
/// use greenhub::{hub, process::Command};
///
/// let out = hub::run(|| Command::new("sh").args(["-c", "echo $GREETING"]).env("GREETING", "hi").output())?;
/// assert_eq!(out.stdout, b"hi\n");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Command {
    inner: std::process::Command,
    stdin_set: bool,
    stdout_set: bool,
    stderr_set: bool,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Command {
    /// A command for `program` (std's `Command::new`).
    pub fn new<S: AsRef<OsStr>>(program: S) -> Command {
        Command {
            inner: std::process::Command::new(program),
            stdin_set: false,
            stdout_set: false,
            stderr_set: false,
        }
    }

    /// Adds an argument.
    pub fn arg<S: AsRef<OsStr>>(&mut self, arg: S) -> &mut Command {
        self.inner.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env<K: AsRef<OsStr>, V: AsRef<OsStr>>(&mut self, key: K, val: V) -> &mut Command {
        self.inner.env(key, val);
        self
    }

    /// Sets environment variables.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.inner.envs(vars);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove<K: AsRef<OsStr>>(&mut self, key: K) -> &mut Command {
        self.inner.env_remove(key);
        self
    }

    /// Clears the environment.
    pub fn env_clear(&mut self) -> &mut Command {
        self.inner.env_clear();
        self
    }

    /// Sets the working directory.
    pub fn current_dir<P: AsRef<Path>>(&mut self, dir: P) -> &mut Command {
        self.inner.current_dir(dir);
        self
    }

    /// Configures the child's stdin ([`Stdio::piped`] gives a [`ChildStdin`]).
    pub fn stdin<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.inner.stdin(cfg);
        self.stdin_set = true;
        self
    }

    /// Configures the child's stdout ([`Stdio::piped`] gives a [`ChildStdout`]).
    pub fn stdout<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.inner.stdout(cfg);
        self.stdout_set = true;
        self
    }

    /// Configures the child's stderr ([`Stdio::piped`] gives a [`ChildStderr`]).
    pub fn stderr<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.inner.stderr(cfg);
        self.stderr_set = true;
        self
    }

    /// Sets the child's user id (`CommandExt::uid`).
    pub fn uid(&mut self, id: u32) -> &mut Command {
        std::os::unix::process::CommandExt::uid(&mut self.inner, id);
        self
    }

    /// Sets the child's group id (`CommandExt::gid`).
    pub fn gid(&mut self, id: u32) -> &mut Command {
        std::os::unix::process::CommandExt::gid(&mut self.inner, id);
        self
    }

    /// Puts the child in process group `pgroup` (0: a new group of its own;
    /// `CommandExt::process_group`).
    pub fn process_group(&mut self, pgroup: i32) -> &mut Command {
        std::os::unix::process::CommandExt::process_group(&mut self.inner, pgroup);
        self
    }

    /// Sets `argv[0]` (`CommandExt::arg0`).
    pub fn arg0<S: AsRef<OsStr>>(&mut self, arg: S) -> &mut Command {
        std::os::unix::process::CommandExt::arg0(&mut self.inner, arg);
        self
    }

    /// Runs `f` in the child between fork and exec (`CommandExt::pre_exec`).
    ///
    /// # Safety
    /// As `std::os::unix::process::CommandExt::pre_exec`: `f` runs in a forked copy of this
    /// process and may only do what is async-signal-safe there.
    #[allow(unsafe_code)]
    pub unsafe fn pre_exec<F>(&mut self, f: F) -> &mut Command
    where
        F: FnMut() -> io::Result<()> + Send + Sync + 'static,
    {
        // SAFETY: the caller upholds pre_exec's contract, which we forward unchanged.
        unsafe { std::os::unix::process::CommandExt::pre_exec(&mut self.inner, f) };
        self
    }

    /// The program.
    pub fn get_program(&self) -> &OsStr {
        self.inner.get_program()
    }

    /// The arguments.
    pub fn get_args(&self) -> CommandArgs<'_> {
        self.inner.get_args()
    }

    /// The environment changes.
    pub fn get_envs(&self) -> CommandEnvs<'_> {
        self.inner.get_envs()
    }

    /// The working directory, if set.
    pub fn get_current_dir(&self) -> Option<&Path> {
        self.inner.get_current_dir()
    }

    /// The std command underneath, for settings greenhub does not forward.
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.inner
    }

    /// Applies the default for each stdio stream not set by the user.
    fn defaults(&mut self, stdin: fn() -> Stdio, out: fn() -> Stdio) {
        if !self.stdin_set {
            self.inner.stdin(stdin());
        }
        if !self.stdout_set {
            self.inner.stdout(out());
        }
        if !self.stderr_set {
            self.inner.stderr(out());
        }
    }

    /// Starts the process (std's `spawn`; unset stdio is inherited).
    ///
    /// # Errors
    /// As std: the program cannot be found or executed, descriptors ran out, ...
    ///
    /// # Examples
    ///
    /// ```
    /// use greenhub::{hub, process::Command};
    /// hub::run(|| {
    ///     let mut child = Command::new("true").spawn().unwrap();
    ///     assert!(child.wait().unwrap().success());
    /// });
    /// ```
    pub fn spawn(&mut self) -> io::Result<Child> {
        self.defaults(Stdio::inherit, Stdio::inherit);
        Child::adopt(self.inner.spawn()?)
    }

    /// Runs the process to completion, capturing stdout and stderr (std's `output`; unless set,
    /// stdin is null). Only the calling greenlet waits.
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn) and [`Child::wait_with_output`].
    ///
    /// # Panics
    /// Inside the hub (a hub callback).
    ///
    /// # Examples
    /// See [`Command`].
    pub fn output(&mut self) -> io::Result<Output> {
        self.defaults(Stdio::null, Stdio::piped);
        Child::adopt(self.inner.spawn()?)?.wait_with_output()
    }

    /// Runs the process to completion with inherited stdio (std's `status`). Only the calling
    /// greenlet waits.
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn) and [`Child::wait`].
    ///
    /// # Panics
    /// Inside the hub (a hub callback).
    ///
    /// # Examples
    ///
    /// ```
    /// use greenhub::{hub, process::Command};
    /// let st = hub::run(|| Command::new("sh").args(["-c", "exit 3"]).status()).unwrap();
    /// assert_eq!(st.code(), Some(3));
    /// ```
    pub fn status(&mut self) -> io::Result<ExitStatus> {
        self.defaults(Stdio::inherit, Stdio::inherit);
        Child::adopt(self.inner.spawn()?)?.wait()
    }
}

/// A running (or finished) child process (std's `Child`): waits park only the calling greenlet.
///
/// Dropping it neither kills nor leaves a zombie: see the [module docs](self).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use greenhub::{hub, process::Command};
///
/// hub::run(|| {
///     let mut child = Command::new("sleep").arg("10").spawn().unwrap();
///     assert!(child.wait_timeout(Duration::from_millis(20)).unwrap().is_none());
///     child.kill().unwrap();
///     assert!(!child.wait().unwrap().success());
/// });
/// ```
pub struct Child {
    /// `None` only inside `drop` (handed to the reaper).
    std: Option<std::process::Child>,
    /// The child's pidfd, registered with the hub at the first wait; `None`: the fallback.
    pidfd: Option<Registered<OwnedFd>>,
    status: Option<ExitStatus>,
    /// The child's stdin, if piped (std's field).
    pub stdin: Option<ChildStdin>,
    /// The child's stdout, if piped (std's field).
    pub stdout: Option<ChildStdout>,
    /// The child's stderr, if piped (std's field).
    pub stderr: Option<ChildStderr>,
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.id())
            .field("pidfd", &self.pidfd.is_some())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// One pause of the fallback's polling: parks the greenlet (or sleeps the thread outside a hub);
/// an expired timeout scope or a kill ends the wait with an error.
fn nap_for_child(nap: Duration) -> io::Result<()> {
    let Some(hub) = crate::rt::existing_hub() else {
        std::thread::sleep(nap);
        return Ok(());
    };
    match hub.park(
        WaitOn::Sync(&"a child process to exit"),
        Some(Instant::now() + nap),
    ) {
        Wake::TimedOut | Wake::Woken => Ok(()),
        Wake::ScopeExpired => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "an enclosing greenhub timeout expired while waiting for a child process",
        )),
        Wake::Killed | Wake::Deadlock => Err(crate::reactor::killed()),
    }
}

fn nonblocking(fd: OwnedFd) -> io::Result<OwnedFd> {
    crate::io::fd::set_nonblocking(fd.as_raw_fd(), true)?;
    Ok(fd)
}

impl Child {
    fn adopt(mut c: std::process::Child) -> io::Result<Child> {
        let pidfd = reaper::pidfd_open(c.id()).map(Registered::new);
        let stdin = c.stdin.take().map(OwnedFd::from).map(nonblocking);
        let stdout = c.stdout.take().map(OwnedFd::from).map(nonblocking);
        let stderr = c.stderr.take().map(OwnedFd::from).map(nonblocking);
        let mut child = Child {
            std: Some(c),
            pidfd,
            status: None,
            stdin: None,
            stdout: None,
            stderr: None,
        };
        // On an fcntl failure the Child drops here: the process is handed to the reaper.
        child.stdin = stdin
            .transpose()?
            .map(|fd| ChildStdin(PipeWriter::adopt(fd)));
        child.stdout = stdout
            .transpose()?
            .map(|fd| ChildStdout(PipeReader::adopt(fd)));
        child.stderr = stderr
            .transpose()?
            .map(|fd| ChildStderr(PipeReader::adopt(fd)));
        Ok(child)
    }

    fn std(&mut self) -> &mut std::process::Child {
        self.std
            .as_mut()
            .expect("greenhub: a live Child has its process")
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.std.as_ref().map_or(0, |c| c.id())
    }

    /// Sends `SIGKILL` (std's `kill`: `Ok` if it has already exited).
    ///
    /// # Errors
    /// The `kill(2)` error.
    pub fn kill(&mut self) -> io::Result<()> {
        self.std().kill()
    }

    /// Collects the exit status if the process has exited, without waiting.
    ///
    /// # Errors
    /// The `waitpid` error.
    ///
    /// # Examples
    ///
    /// ```
    /// use greenhub::{hub, process::Command};
    /// hub::run(|| {
    ///     let mut c = Command::new("sleep").arg("1").spawn().unwrap();
    ///     assert_eq!(c.try_wait().unwrap(), None);
    ///     c.kill().unwrap();
    ///     c.wait().unwrap();
    ///     assert!(c.try_wait().unwrap().is_some());
    /// });
    /// ```
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let s = self.std().try_wait()?;
        self.status = s;
        Ok(s)
    }

    /// Waits for the process to exit, parking only the calling greenlet; closes our end of its
    /// stdin first (as std does, so a child reading stdin to its end can finish).
    ///
    /// # Errors
    /// The `waitpid` error; `TimedOut` when an enclosing timeout scope expires (the child runs
    /// on; wait again or drop it).
    ///
    /// # Panics
    /// Inside the hub (a hub callback).
    ///
    /// # Examples
    /// See [`Child`].
    #[track_caller]
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        match self.wait_deadline(None)? {
            Some(s) => Ok(s),
            None => unreachable!("greenhub: a wait without deadline ended without a status"),
        }
    }

    /// Waits at most `timeout` for the process to exit: `Ok(None)` if it is still running then
    /// (the `wait-timeout` crate's `wait_timeout`). Stdin stays open.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// # Panics
    /// Inside the hub (a hub callback).
    ///
    /// # Examples
    /// See [`Child`].
    #[track_caller]
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        self.wait_deadline(crate::io::fd::deadline_after(Some(timeout)))
    }

    fn wait_deadline(&mut self, deadline: Option<Instant>) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.try_wait()? {
            return Ok(Some(s));
        }
        if let Some(reg) = &self.pidfd {
            let std = self.std.as_mut().expect("a live Child has its process");
            let status = &mut self.status;
            let r = reg.io_deadline(Dir::Read, deadline, OnTimeout::WouldBlock, |_| {
                match std.try_wait()? {
                    Some(s) => {
                        *status = Some(s);
                        Ok(s)
                    }
                    None => Err(io::ErrorKind::WouldBlock.into()),
                }
            });
            return match r {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None), // our deadline
                Err(e) => Err(e),
            };
        }
        // Fallback: poll waitpid on a timer.
        let mut pause = Duration::from_millis(1);
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(None);
            }
            let nap = deadline.map_or(pause, |d| pause.min(d - now));
            nap_for_child(nap)?;
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Closes stdin, reads stdout and stderr to their ends (concurrently: stderr in a helper
    /// greenlet) and waits for the exit; only the calling greenlet waits (std's
    /// `wait_with_output`).
    ///
    /// # Errors
    /// A read error, or as [`wait`](Self::wait).
    ///
    /// # Panics
    /// Inside the hub (a hub callback).
    ///
    /// # Examples
    ///
    /// ```
    /// use greenhub::{hub, process::{Command, Stdio}};
    /// hub::run(|| {
    ///     let child = Command::new("sh").args(["-c", "echo out; echo err >&2"])
    ///         .stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    ///     let out = child.wait_with_output().unwrap();
    ///     assert_eq!((&out.stdout[..], &out.stderr[..]), (&b"out\n"[..], &b"err\n"[..]));
    /// });
    /// ```
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let stdout = self.stdout.take();
        let stderr = self.stderr.take();
        /// Kills the helper if the caller unwinds (killed) before joining it.
        struct Helper(Option<crate::Greenlet<io::Result<Vec<u8>>>>);
        impl Drop for Helper {
            fn drop(&mut self) {
                if let Some(g) = self.0.take() {
                    g.kill_nowait();
                }
            }
        }
        let mut helper = Helper(stderr.map(|mut e| {
            crate::hub::spawn(move || {
                let mut v = Vec::new();
                e.read_to_end(&mut v).map(|_| v)
            })
        }));
        let mut out = Vec::new();
        if let Some(mut o) = stdout {
            o.read_to_end(&mut out)?;
        }
        let err = match helper.0.take() {
            Some(g) => match g.join() {
                Ok(r) => r?,
                Err(e) => return Err(io::Error::other(e.to_string())),
            },
            None => Vec::new(),
        };
        let status = self.wait()?;
        Ok(Output {
            status,
            stdout: out,
            stderr: err,
        })
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let Some(mut c) = self.std.take() else {
            return;
        };
        if self.status.is_some() || matches!(c.try_wait(), Ok(Some(_))) {
            return; // reaped
        }
        let pidfd = self.pidfd.take().map(|r| r.into_inner(|_, _| Ok(())));
        reaper::adopt(c, pidfd);
    }
}

macro_rules! child_pipe {
    ($(#[$m:meta])* $t:ident($inner:ident)) => {
        $(#[$m])*
        #[derive(Debug)]
        pub struct $t($inner);

        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.0.as_raw_fd()
            }
        }

        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.as_fd()
            }
        }

        impl From<$t> for OwnedFd {
            /// The descriptor, back in blocking mode.
            fn from(p: $t) -> OwnedFd {
                OwnedFd::from(p.0)
            }
        }

        impl From<$t> for Stdio {
            /// Connects this pipe to another child (in blocking mode, as children expect), as
            /// std's `Stdio::from(ChildStdout)` does.
            fn from(p: $t) -> Stdio {
                Stdio::from(OwnedFd::from(p))
            }
        }

        impl $t {
            /// The greenhub pipe end underneath.
            pub fn into_pipe(self) -> $inner {
                self.0
            }
        }
    };
}

child_pipe!(
    /// Our end of a child's stdin (std's `ChildStdin`): a write into the full pipe parks only the
    /// calling greenlet. Dropping it closes the pipe (the child reads end of file).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use greenhub::{hub, process::{Command, Stdio}};
    ///
    /// hub::run(|| {
    ///     let mut wc = Command::new("wc").arg("-c")
    ///         .stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    ///     wc.stdin.take().unwrap().write_all(b"12345").unwrap(); // dropped: wc sees the end
    ///     let out = wc.wait_with_output().unwrap();
    ///     assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5");
    /// });
    /// ```
    ChildStdin(PipeWriter)
);
child_pipe!(
    /// Our end of a child's stdout (std's `ChildStdout`): a read with nothing to read parks only
    /// the calling greenlet. It can feed another child (`Stdio::from`).
    ///
    /// # Examples
    ///
    /// ```
    /// use greenhub::{hub, process::{Command, Stdio}};
    ///
    /// hub::run(|| {
    ///     let mut ls = Command::new("echo").arg("b\na").stdout(Stdio::piped()).spawn().unwrap();
    ///     let sorted = Command::new("sort").stdin(ls.stdout.take().unwrap()).output().unwrap();
    ///     assert_eq!(sorted.stdout, b"a\nb\n");
    ///     ls.wait().unwrap();
    /// });
    /// ```
    ChildStdout(PipeReader)
);
child_pipe!(
    /// Our end of a child's stderr (std's `ChildStderr`); see [`ChildStdout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use greenhub::{hub, process::{Command, Stdio}};
    ///
    /// hub::run(|| {
    ///     let mut c = Command::new("sh").args(["-c", "echo oops >&2"])
    ///         .stderr(Stdio::piped()).spawn().unwrap();
    ///     let mut e = String::new();
    ///     c.stderr.take().unwrap().read_to_string(&mut e).unwrap();
    ///     assert_eq!(e, "oops\n");
    ///     c.wait().unwrap();
    /// });
    /// ```
    ChildStderr(PipeReader)
);

impl Write for ChildStdin {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for ChildStdout {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Read for ChildStderr {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}
