//! One anonymous private mapping with a `PROT_NONE` guard page at its low end: what every greenhub
//! stack (the shared stack, the hub's stack, an alternate signal stack) is made of.
//!
//! ```text
//!   top  ┌───────────────────┐  base + len
//!        │ usable            │  read/write; only touched pages cost memory
//!  limit ├───────────────────┤  base + page
//!        │ guard (PROT_NONE) │  a stack that grows into it faults instead of overwriting memory
//!   base └───────────────────┘
//! ```

use std::io;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system page size (asked once; `sysconf` costs ~40 instructions, and the hub needs it on
/// every spawn).
pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf has no memory-safety preconditions.
            let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let n = if n <= 0 { 4096 } else { n as usize };
            PAGE.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// Whether the kernel may refuse pages later rather than reserve swap now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reserve {
    /// `MAP_NORESERVE`: big stacks of which only a little is ever touched.
    Lazily,
    /// Commit now: small regions that must not fail when used (a signal stack).
    Now,
}

/// A guarded mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct GuardedMapping {
    /// Start of the mapping: the guard page.
    base: *mut u8,
    /// Whole mapping, guard included.
    len: usize,
}

impl GuardedMapping {
    /// Maps at least `usable` bytes (rounded up to whole pages, and at least `min_pages` pages)
    /// above one guard page.
    ///
    /// # Errors
    /// `InvalidInput` if the size overflows; the OS error of `mmap` or `mprotect`.
    pub(crate) fn new(usable: usize, min_pages: usize, reserve: Reserve) -> io::Result<Self> {
        let page = page_size();
        let len = usable
            .max(page * min_pages)
            .checked_add(page - 1)
            .and_then(|n| (n & !(page - 1)).checked_add(page))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "stack size overflows"))?;
        let flags = libc::MAP_PRIVATE
            | libc::MAP_ANONYMOUS
            | if reserve == Reserve::Lazily {
                libc::MAP_NORESERVE
            } else {
                0
            };
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing aliases no
        // Rust object; the result is checked for MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = GuardedMapping {
            base: base.cast(),
            len,
        };
        // SAFETY: [base, base + page) lies inside the mapping just made and owned by nobody else;
        // on failure `map` unmaps it on drop.
        unsafe { syscall!(mprotect(base, page, libc::PROT_NONE)) }?;
        if reserve == Reserve::Lazily {
            // A stack touches a few pages at its top; with transparent huge pages set to
            // `always`, the first touch could fault in a whole 2 MiB page for each of them.
            // Best effort: the kernel may be built without THP (EINVAL).
            #[cfg(any(target_os = "linux", target_os = "android"))]
            // SAFETY: advice on the mapping just made; it changes no contents.
            unsafe {
                libc::madvise(base, len, libc::MADV_NOHUGEPAGE);
            }
        }
        Ok(map)
    }

    /// One past the highest usable byte; page aligned.
    pub(crate) fn top(&self) -> *mut u8 {
        self.base.wrapping_add(self.len)
    }

    /// Lowest usable byte, just above the guard page.
    pub(crate) fn limit(&self) -> *mut u8 {
        self.base.wrapping_add(page_size())
    }

    /// Usable bytes (the mapping without its guard page).
    pub(crate) fn usable(&self) -> usize {
        self.len - page_size()
    }

    /// Gives the usable pages back to the kernel (`MADV_DONTNEED`): RSS drops, the mapping stays,
    /// and the pages read as zeros when touched again. Best effort.
    ///
    /// The caller must make sure nothing lives in the usable part any more (a stack nobody is
    /// bound to): its contents are lost.
    pub(crate) fn release(&self) {
        // SAFETY: the range is the usable part of our own mapping; discarding its contents is what
        // the caller asked for and affects no Rust object (nothing lives there, by the contract).
        unsafe {
            libc::madvise(self.limit().cast(), self.usable(), libc::MADV_DONTNEED);
        }
    }

    /// Address range of the guard page.
    pub(crate) fn guard(&self) -> std::ops::Range<usize> {
        self.base as usize..self.limit() as usize
    }
}

impl Drop for GuardedMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `new` with exactly this base and length; the owner drops
        // it only when nothing runs or is suspended on it (rt invariant 7).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}
