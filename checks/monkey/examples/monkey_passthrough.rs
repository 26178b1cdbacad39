//! The cost of a pass-through call under the `monkey` feature: a regular-file `read` on a plain
//! thread through greenhub's `read` (what std and C code call), beside the raw system call and
//! glibc's own `read` wrapper; plus the same read inside a greenlet (where greenhub first tries
//! the socket call, which a file refuses with `ENOTSOCK`).
//!
//! ```sh
//! cargo run --release --features monkey --example monkey_passthrough            # ns per call
//! # instructions per call (user space only, repeatable): run a variant with N and with 0 calls
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/monkey_passthrough greenhub 100000
//! ```
//! Variants: `greenhub` (libc::read, i.e. greenhub's), `std` (std::fs::File::read), `syscall`
//! (libc::syscall(SYS_read)), `glibc` (libc's read, found with dlsym(RTLD_NEXT)), `greenlet`
//! (greenhub's read inside a greenlet).

use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::Instant;

type ReadFn = unsafe extern "C" fn(i32, *mut libc::c_void, usize) -> isize;

fn glibc_read() -> ReadFn {
    // SAFETY: dlsym only reads the NUL-terminated name.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, c"read".as_ptr()) };
    assert!(!p.is_null(), "libc's read not found");
    // SAFETY: libc's `read` has this C signature.
    unsafe { std::mem::transmute::<*mut libc::c_void, ReadFn>(p) }
}

/// Runs `n` reads of `variant` on `f` (at end of file: every call is a real system call that
/// returns 0, so the kernel's work is the same in every variant).
fn run(variant: &str, f: &std::fs::File, n: u64) {
    let fd = f.as_raw_fd();
    let mut buf = [0u8; 64];
    let p = buf.as_mut_ptr().cast::<libc::c_void>();
    match variant {
        // SAFETY (all arms): `buf` is live and writable for its length; `fd` is open.
        "greenhub" => (0..n).for_each(|_| assert_eq!(unsafe { libc::read(fd, p, 64) }, 0)),
        "std" => (0..n).for_each(|_| assert_eq!((&*f).read(&mut buf).unwrap(), 0)),
        "syscall" => (0..n).for_each(|_| {
            // SAFETY: as above.
            assert_eq!(unsafe { libc::syscall(libc::SYS_read, fd, p, 64usize) }, 0)
        }),
        "glibc" => {
            let real = glibc_read();
            // SAFETY: as above.
            (0..n).for_each(|_| assert_eq!(unsafe { real(fd, p, 64) }, 0))
        }
        "greenlet" => {
            let f = f.try_clone().unwrap();
            greenhub::hub::run(move || run("greenhub", &f, n));
        }
        other => panic!("unknown variant {other}"),
    }
}

fn main() {
    assert!(
        greenhub::monkey::is_active(),
        "build with --features monkey"
    );
    let path = std::env::temp_dir().join(format!("greenhub-passthrough-{}", std::process::id()));
    std::fs::write(&path, b"x").unwrap();
    let mut f = std::fs::File::open(&path).unwrap();
    f.read_exact(&mut [0u8; 1]).unwrap(); // at end of file from here on
    std::fs::remove_file(&path).unwrap();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [variant, n] = &args[..] {
        run(variant, &f, n.parse().unwrap());
        return;
    }
    const N: u64 = 2_000_000;
    for variant in ["syscall", "glibc", "greenhub", "std", "greenlet"] {
        run(variant, &f, N / 10); // warm up
        let start = Instant::now();
        run(variant, &f, N);
        let ns = start.elapsed().as_nanos() as f64 / N as f64;
        println!("{variant:>9}: {ns:6.1} ns per read");
    }
}
