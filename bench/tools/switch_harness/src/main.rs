//! Two contexts switch back and forth through the x86_64 switch, in two variants linked into this
//! one binary (`a`: the repository's `arch/x86_64_sysv.s`; `b`: the file `SWITCH_B` named at build
//! time, see `build.rs`). Rounds of 500,000 round trips alternate between the variants and the two
//! cases, and the medians are printed:
//!
//! - `same site`: both contexts call the switch from the same instruction (one shared loop), so
//!   the switch's `ret` always lands where the return-stack predictor expects;
//! - `two sites`: each context calls it from its own loop, so every `ret` lands on the other
//!   context's call site, which the predictor cannot know: what a switch between greenlets running
//!   different code costs.
//!
//! Both variants live in one binary and their rounds interleave, so the machine's drift hits both
//! alike. Run it with `SWITCH_B` unset (an A/A run) to see how far apart two identical variants
//! read: up to 0.8 ns per round trip on the machine of BENCHMARKS.md, "Fifth pass".
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the harness drives the x86_64 switch only");

core::arch::global_asm!(include_str!(concat!(env!("OUT_DIR"), "/a.s")));
core::arch::global_asm!(include_str!(concat!(env!("OUT_DIR"), "/b.s")));

type Switch = unsafe extern "C" fn(*mut *mut u8, *mut u8, usize) -> usize;

extern "C" {
    fn switch_a(save: *mut *mut u8, load: *mut u8, value: usize) -> usize;
    fn trampoline_a();
    fn switch_b(save: *mut *mut u8, load: *mut u8, value: usize) -> usize;
    fn trampoline_b();
}

/// The two contexts' saved stack pointers: 0 is main's, 1 the other stack's.
static mut SPS: [*mut u8; 2] = [std::ptr::null_mut(); 2];
/// Switches left in the current round.
static mut LEFT: u64 = 0;
/// Whether the other context runs the shared loop (`same site`) or its own (`two sites`).
static mut SHARED: bool = true;
/// Whether this round uses variant `b`.
static mut USE_B: bool = false;

/// The shared loop: switches to the other context until `LEFT` runs out. One loop per variant, so
/// each calls its switch directly.
#[inline(never)]
fn shared_loop(me: usize) {
    // SAFETY: single-threaded; the two contexts never run at once, and both stacks outlive the
    // round.
    unsafe {
        if USE_B {
            while LEFT > 0 {
                LEFT -= 1;
                switch_b(&raw mut SPS[me], SPS[1 - me], 0);
            }
        } else {
            while LEFT > 0 {
                LEFT -= 1;
                switch_a(&raw mut SPS[me], SPS[1 - me], 0);
            }
        }
    }
}

/// The other context's own loop, for `two sites`: the same work from different call sites.
#[inline(never)]
fn own_loop() {
    // SAFETY: as in `shared_loop`.
    unsafe {
        if USE_B {
            while LEFT > 0 {
                LEFT -= 1;
                black_box(());
                switch_b(&raw mut SPS[1], SPS[0], 0);
            }
        } else {
            while LEFT > 0 {
                LEFT -= 1;
                black_box(());
                switch_a(&raw mut SPS[1], SPS[0], 0);
            }
        }
    }
}

/// The other context. A round ends with it parked inside its loop; the next round starts it
/// afresh from a new frame, so nothing of it is resumed across rounds.
extern "C" fn entry(_value: usize, _arg: usize) -> ! {
    // SAFETY: as in `shared_loop`.
    unsafe {
        if SHARED {
            shared_loop(1);
        } else {
            own_loop();
        }
    }
    unreachable!("the round's last switch returns to main, which never switches back");
}

fn main() {
    let n: u64 = 500_000;
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("rounds"))
        .unwrap_or(40);
    let stack = vec![0u8; 1 << 16];
    let top = (stack.as_ptr() as usize + stack.len()) & !15;
    let mut times: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for round in 0..=rounds {
        for (variant, use_b, trampoline) in [
            ("a", false, trampoline_a as unsafe extern "C" fn()),
            ("b", true, trampoline_b as unsafe extern "C" fn()),
        ] {
            for (case, shared) in [("same site", true), ("two sites", false)] {
                // A fresh frame as src/sys/switch.rs writes it: float control, r15..rbp, return
                // address.
                let sp = (top - 64) as *mut usize;
                // SAFETY: the 64 bytes below `top` are inside `stack`; the context left there by
                // the previous round is abandoned (it holds nothing that needs dropping).
                unsafe {
                    std::ptr::write_bytes(sp, 0, 8);
                    sp.write(0x1F80 | (0x037F << 32));
                    sp.add(4).write(entry as *const () as usize);
                    sp.add(7).write(trampoline as *const () as usize);
                    SPS[1] = sp.cast();
                    USE_B = use_b;
                    SHARED = shared;
                    LEFT = 2 * n;
                }
                let t = Instant::now();
                shared_loop(0);
                let ns = t.elapsed().as_nanos() as f64 / n as f64;
                // Round 0 warms up.
                if round > 0 {
                    times.entry((case, variant)).or_default().push(ns);
                }
            }
        }
    }
    let _: Switch = switch_a;
    let _: Switch = switch_b;
    println!("ns per round trip (two switches), {rounds} rounds of {n} each:");
    for ((case, variant), mut v) in times {
        v.sort_by(f64::total_cmp);
        let at = |q: usize| v[(v.len() - 1) * q / 100];
        println!(
            "  {case:<9} {variant}: median {:6.2}   p10 {:6.2}   p90 {:6.2}",
            at(50),
            at(10),
            at(90)
        );
    }
}
