//! Stacks and stack slices.
//!
//! Two things live here and nowhere else:
//!
//! - [`Stack`]: an anonymous `mmap` with a `PROT_NONE` guard page at its low end. Only touched pages
//!   cost memory, so a hub's multi-megabyte shared stack costs what its deepest greenlet touched.
//! - [`Slice`]: the heap copy of a suspended worker's live stack bytes, and the two functions that
//!   move those bytes between the shared stack and the heap. This is the only code that copies stack
//!   memory.
//!
//! ```text
//!   shared stack                                  heap
//!   ┌───────────────────┐ top (16-byte aligned)
//!   │ occupant's frames │                         Slice of worker A (evicted earlier):
//!   │  ...              │                         ┌──────────────────────────┐
//!   │ switch frame      │ <- occupant.sp          │ bytes of [A.sp, top)      │  len = top - A.sp
//!   ├───────────────────┤                         └──────────────────────────┘
//!   │ free              │
//!   ├───────────────────┤ <- limit
//!   │ guard (PROT_NONE) │
//!   └───────────────────┘ base
//! ```
//!
//! To resume A while B occupies the stack, the hub (running on its own stack, so nothing it needs is
//! in the region being overwritten) calls [`Slice::save`] for B — `[B.sp, top)` to B's buffer — then
//! [`Slice::restore`] for A — A's buffer back to `[A.sp, top)`, the very addresses it came from. From
//! then until the next eviction the bytes of B on the shared stack are garbage, and nothing may read
//! them: that is invariant 1 in ARCHITECTURE.md (no pointer into a suspended greenlet's stack is used).

use std::io;
use std::ptr;

/// An `mmap`'d stack with a guard page below it. Unmapped on drop.
pub(crate) struct Stack {
    /// Start of the mapping: the guard page.
    base: *mut u8,
    /// Whole mapping, guard included.
    len: usize,
    /// Its id with valgrind (0 without the `valgrind` feature).
    vg_id: usize,
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n <= 0 {
        4096
    } else {
        n as usize
    }
}

impl Stack {
    /// Maps a stack with at least `size` usable bytes (rounded up to whole pages) above one guard
    /// page.
    pub(crate) fn new(size: usize) -> io::Result<Stack> {
        let page = page_size();
        let usable =
            size.max(page * 4).checked_add(page - 1).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "stack size overflows")
            })? & !(page - 1);
        let len = usable + page;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing aliases no
        // Rust object; the result is checked for MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = base.cast::<u8>();
        // SAFETY: [base, base+page) lies inside the mapping just made and owned by nobody else.
        if unsafe { libc::mprotect(base.cast(), page, libc::PROT_NONE) } != 0 {
            let err = io::Error::last_os_error();
            // SAFETY: unmapping the mapping made above, which nothing references yet.
            unsafe { libc::munmap(base.cast(), len) };
            return Err(err);
        }
        let vg_id =
            crate::valgrind::stack_register(base.wrapping_add(page), base.wrapping_add(len));
        Ok(Stack { base, len, vg_id })
    }

    /// One past the highest usable byte; 16-byte aligned (page aligned, in fact).
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

    /// Address range of the guard page.
    pub(crate) fn guard(&self) -> std::ops::Range<usize> {
        self.base as usize..self.limit() as usize
    }

    /// Whether `addr` lies in the usable part of this stack.
    pub(crate) fn contains(&self, addr: usize) -> bool {
        addr >= self.limit() as usize && addr <= self.top() as usize
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        crate::valgrind::stack_deregister(self.vg_id);
        // SAFETY: the mapping was made in `new` with exactly this base and length, and the hub drops
        // a Stack only when no context runs on it or is suspended on it (invariant 7).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// The heap copy of one worker's live stack bytes while another worker occupies the shared stack.
///
/// The buffer is kept between evictions, so a worker that is evicted again and again allocates once;
/// it is shrunk only when it is more than four times (and 16 KiB) larger than what it holds.
#[derive(Default)]
pub(crate) struct Slice {
    bytes: Vec<u8>,
}

/// Capacity above which a mostly-empty slice buffer is given back.
const SHRINK_FLOOR: usize = 16 * 1024;

impl Slice {
    /// Heap bytes reserved for this slice.
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Copies `[sp, top)` from the shared stack into this buffer. Returns the number of bytes copied.
    ///
    /// # Safety
    /// `[sp, top)` must be the live slice of a suspended worker that occupies the shared stack, and
    /// the caller must be running on another stack (the hub's).
    pub(crate) unsafe fn save(&mut self, sp: *const u8, top: *const u8) -> usize {
        let n = top as usize - sp as usize;
        self.bytes.clear();
        if self.bytes.capacity() < n {
            // The first save reserves exactly the slice (most workers park at the same depth
            // every time, and rounding up to a power of two wasted up to half of every idle
            // greenlet's memory); a worker that deepens later grows by doubling (Vec's amortized
            // growth), so it does not reallocate on every eviction.
            self.bytes.reserve(n);
        } else if self.bytes.capacity() > SHRINK_FLOOR && self.bytes.capacity() / 4 > n {
            self.bytes.shrink_to(n);
        }
        // SAFETY: the caller guarantees [sp, top) is readable stack memory not being written while
        // we copy (its owner is suspended and we run on the hub's stack); the destination has room
        // for n bytes and cannot overlap a stack mapping (invariants 1 and 8).
        unsafe {
            ptr::copy_nonoverlapping(sp, self.bytes.as_mut_ptr(), n);
            self.bytes.set_len(n);
        }
        n
    }

    /// Copies the saved bytes back to `[sp, sp + len)`, the addresses they were saved from. Returns
    /// the number of bytes copied.
    ///
    /// # Safety
    /// `sp` must be the stack pointer this slice was saved with, on the same shared stack, no context
    /// may be using those addresses (the previous occupant's bytes have been saved or are dead), and
    /// the caller must be running on another stack.
    pub(crate) unsafe fn restore(&self, sp: *mut u8) -> usize {
        let n = self.bytes.len();
        // memcheck marks shared-stack bytes inaccessible once the worker that ran there last
        // popped above them; they belong to this slice again. The copy brings their definedness.
        crate::valgrind::make_mem_undefined(sp, sp.wrapping_add(n));
        // SAFETY: the caller guarantees [sp, sp+n) is writable shared-stack memory that nothing
        // running or suspended is using; the heap buffer cannot overlap it (invariants 1 and 8).
        unsafe { ptr::copy_nonoverlapping(self.bytes.as_ptr(), sp, n) };
        n
    }

    /// Gives back the buffer (the worker finished or its bytes were restored for good).
    pub(crate) fn release(&mut self) {
        self.bytes = Vec::new();
    }
}
