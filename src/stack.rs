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
//! them: that is invariant 1 of [`crate::rt`] (no pointer into a suspended greenlet's stack is used).

use std::alloc::{self, Layout};
use std::cell::Cell;
use std::io;
use std::ptr::{self, NonNull};

use crate::sys::mmap::{GuardedMapping, Reserve};
use crate::sys::valgrind;

/// An `mmap`'d stack with a guard page below it, registered with valgrind. Unmapped on drop.
pub(crate) struct Stack {
    map: GuardedMapping,
    /// Its id with valgrind (0 without the `valgrind` feature).
    vg_id: usize,
}

impl Stack {
    /// Maps a stack with at least `size` usable bytes (rounded up to whole pages, at least four)
    /// above one guard page.
    ///
    /// # Errors
    /// `InvalidInput` if the size overflows; the OS error if it cannot be mapped.
    pub(crate) fn new(size: usize) -> io::Result<Stack> {
        let map = GuardedMapping::new(size, 4, Reserve::Lazily)?;
        let vg_id = valgrind::stack_register(map.limit(), map.top());
        Ok(Stack { map, vg_id })
    }

    /// One past the highest usable byte; 16-byte aligned (page aligned, in fact).
    pub(crate) fn top(&self) -> *mut u8 {
        self.map.top()
    }

    /// Usable bytes (the mapping without its guard page).
    pub(crate) fn usable(&self) -> usize {
        self.map.usable()
    }

    /// Drops the stack's pages (see [`GuardedMapping::release`]); only for a stack no context is
    /// bound to.
    pub(crate) fn release(&self) {
        self.map.release();
    }

    /// Address range of the guard page.
    pub(crate) fn guard(&self) -> std::ops::Range<usize> {
        self.map.guard()
    }

    /// Whether `addr` lies in the usable part of this stack.
    pub(crate) fn contains(&self, addr: usize) -> bool {
        addr >= self.map.limit() as usize && addr <= self.map.top() as usize
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        valgrind::stack_deregister(self.vg_id);
        // `map` unmaps itself next; its owner (the hub) drops a Stack only when no context runs on
        // it or is suspended on it (rt invariant 7).
    }
}

/// The heap copy of one worker's live stack bytes while another worker occupies the shared stack.
///
/// The buffer is kept between evictions, so a worker that is evicted again and again allocates once;
/// it is shrunk only when it is more than four times (and 16 KiB) larger than what it holds.
///
/// Two words, kept in every control block: the buffer's address and its length and capacity as
/// 32-bit numbers (a slice is at most a stack region, which `hub::Config` keeps far below 4 GiB),
/// in `Cell`s so the slicing code needs no borrow flag. It is touched only by the slicing code on
/// the hub's stack (rt invariant 8), never re-entered.
pub(crate) struct Slice {
    /// The buffer, `cap` bytes from the global allocator with alignment 1; dangling when `cap`
    /// is 0.
    ptr: Cell<NonNull<u8>>,
    /// Bytes saved (the live part of the buffer).
    len: Cell<u32>,
    /// Bytes allocated.
    cap: Cell<u32>,
}

impl Default for Slice {
    fn default() -> Self {
        Slice {
            ptr: Cell::new(NonNull::dangling()),
            len: Cell::new(0),
            cap: Cell::new(0),
        }
    }
}

/// Capacity above which a mostly-empty slice buffer is given back.
const SHRINK_FLOOR: usize = 16 * 1024;

impl Slice {
    /// Heap bytes reserved for this slice.
    pub(crate) fn capacity(&self) -> usize {
        self.cap.get() as usize
    }

    /// Makes the buffer exactly `cap` bytes (contents not kept).
    fn reallocate(&self, cap: usize) {
        let cap32 = u32::try_from(cap).unwrap_or_else(|_| {
            panic!("greenhub: a stack slice of {cap} bytes does not fit in 4 GiB; lower the stack size")
        });
        self.release();
        if cap == 0 {
            return;
        }
        let layout = Layout::array::<u8>(cap).expect("greenhub: slice layout");
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { alloc::alloc(layout) };
        let Some(p) = NonNull::new(p) else {
            alloc::handle_alloc_error(layout)
        };
        self.ptr.set(p);
        self.cap.set(cap32);
    }

    /// Copies `[sp, top)` from the shared stack into this buffer. Returns the number of bytes copied.
    ///
    /// # Safety
    /// `[sp, top)` must be the live slice of a suspended worker that occupies the shared stack, and
    /// the caller must be running on another stack (the hub's).
    pub(crate) unsafe fn save(&self, sp: *const u8, top: *const u8) -> usize {
        let n = top as usize - sp as usize;
        let cap = self.capacity();
        if cap < n {
            // The first save reserves exactly the slice (most workers park at the same depth
            // every time, and rounding up to a power of two wasted up to half of every idle
            // greenlet's memory); a worker that deepens later grows by doubling, so it does not
            // reallocate on every eviction.
            self.reallocate(if cap == 0 { n } else { n.max(2 * cap) });
        } else if cap > SHRINK_FLOOR && cap / 4 > n {
            self.reallocate(n);
        }
        // SAFETY: the caller guarantees [sp, top) is readable stack memory not being written while
        // we copy (its owner is suspended and we run on the hub's stack); the buffer has room for
        // n bytes (just ensured) and cannot overlap a stack mapping (rt invariants 1 and 8).
        unsafe { ptr::copy_nonoverlapping(sp, self.ptr.get().as_ptr(), n) };
        self.len.set(n as u32); // n <= cap, which fits in u32
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
        let n = self.len.get() as usize;
        // memcheck marks shared-stack bytes inaccessible once the worker that ran there last
        // popped above them; they belong to this slice again. The copy brings their definedness.
        valgrind::make_mem_undefined(sp, sp.wrapping_add(n));
        // SAFETY: the caller guarantees [sp, sp+n) is writable shared-stack memory that nothing
        // running or suspended is using; the buffer holds n saved bytes and cannot overlap it (rt
        // invariants 1 and 8).
        unsafe { ptr::copy_nonoverlapping(self.ptr.get().as_ptr(), sp, n) };
        n
    }

    /// Gives back the buffer (the worker finished or its bytes were restored for good).
    pub(crate) fn release(&self) {
        let cap = self.capacity();
        if cap != 0 {
            let layout = Layout::array::<u8>(cap).expect("greenhub: slice layout");
            // SAFETY: `ptr` was allocated by `reallocate` with this very layout (`cap` is only
            // set there) and is not used after: the fields are reset before anything else runs.
            unsafe { alloc::dealloc(self.ptr.get().as_ptr(), layout) };
        }
        self.ptr.set(NonNull::dangling());
        self.len.set(0);
        self.cap.set(0);
    }
}

impl Drop for Slice {
    fn drop(&mut self) {
        self.release();
    }
}
