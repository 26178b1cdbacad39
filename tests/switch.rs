//! The switch and the slicing: register state, float control, stack bytes and copy counters
//! survive heavy interleaving.

use std::cell::RefCell;
use std::rc::Rc;

use greenhub::hub;

/// Deterministic per-(greenlet, level, word) pattern.
fn pattern(id: u64, level: u64, i: u64) -> u64 {
    let mut x =
        id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ level.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ i;
    x ^= x >> 31;
    x.wrapping_mul(0x94D0_49BB_1331_11EB)
}

const WORDS: usize = 256; // 2 KiB of data per frame

/// A frame's data and a link to its caller's frame: safe references into our own (running) stack.
struct Frame<'a> {
    level: u64,
    data: &'a [u64; WORDS],
    parent: Option<&'a Frame<'a>>,
}

fn verify(id: u64, mut f: Option<&Frame<'_>>) -> u64 {
    let mut frames = 0;
    while let Some(frame) = f {
        for (i, w) in frame.data.iter().enumerate() {
            assert_eq!(
                *w,
                pattern(id, frame.level, i as u64),
                "greenlet {id}: stack word {i} of level {} corrupted",
                frame.level
            );
        }
        frames += 1;
        f = frame.parent;
    }
    frames
}

/// Recurses `depth` levels, each holding 2 KiB of patterned data live, then yields `rounds` times,
/// verifying every level's data after every switch. Returns the number of frames verified.
fn dive(id: u64, level: u64, depth: u64, rounds: u32, parent: Option<&Frame<'_>>) -> u64 {
    let mut data = [0u64; WORDS];
    for (i, w) in data.iter_mut().enumerate() {
        *w = pattern(id, level, i as u64);
    }
    let frame = Frame {
        level,
        data: &data,
        parent,
    };
    let n = if level + 1 < depth {
        dive(id, level + 1, depth, rounds, Some(&frame))
    } else {
        let mut n = 0;
        for _ in 0..rounds {
            hub::yield_now();
            n += verify(id, Some(&frame));
        }
        n
    };
    std::hint::black_box(&data);
    n
}

#[test]
fn stack_data_intact_across_heavy_interleaving() {
    // 10,000 greenlets, 2-128 KiB deep, every 97th 224 KiB deep, all interleaved by yields.
    let total = hub::run(|| {
        let before = hub::stats();
        let gs: Vec<_> = (0..10_000u64)
            .map(|id| {
                let depth = if id % 97 == 0 {
                    112
                } else {
                    1 + (id * 7919) % 64
                };
                hub::spawn(move || dive(id, 0, depth, 3, None))
            })
            .collect();
        let total: u64 = gs.into_iter().map(|g| g.join().unwrap()).sum();
        let after = hub::stats();
        // Interleaving really sliced: every greenlet was evicted and restored at least once.
        assert!(after.slice_saves - before.slice_saves >= 10_000);
        assert!(after.slice_restores - before.slice_restores >= 10_000);
        assert!(after.bytes_copied - before.bytes_copied > 10_000 * 2048);
        total
    });
    let expected: u64 = (0..10_000u64)
        .map(|id| {
            3 * if id % 97 == 0 {
                112
            } else {
                1 + (id * 7919) % 64
            }
        })
        .sum();
    assert_eq!(total, expected);
}

#[test]
fn spawn_and_join_from_main_is_two_switches() {
    // On a fresh thread (main is the thread's own stack). Main's park in `join` enters the new
    // worker in a free region itself, and the finished worker retires itself and switches
    // straight back to main: no trip through the hub in the steady state (the hub still runs
    // every BUDGET resumes, and for the very first park).
    std::thread::spawn(|| {
        hub::spawn(|| ()).join().unwrap(); // warm up: the hub context runs, a region is free
        const N: u64 = 1000;
        let before = hub::stats();
        for i in 0..N {
            assert_eq!(hub::spawn(move || i).join().unwrap(), i);
        }
        let after = hub::stats();
        let switches = after.switches - before.switches;
        assert!(
            switches <= 2 * N + 2 * N / 30 + 4,
            "{switches} switches for {N} spawn + join (two each, plus the hub's turns)"
        );
        assert_eq!(after.bytes_copied, before.bytes_copied, "nothing is copied");
    })
    .join()
    .unwrap();
}

#[test]
fn resuming_the_occupant_copies_nothing() {
    // On a fresh thread, outside hub::run, so this code is the thread's main greenlet (never
    // copied). One worker and main take turns: every yield really switches (the other side is
    // ready), but the worker stays the occupant of the shared stack, so nothing is copied.
    std::thread::spawn(|| {
        let g = hub::spawn(|| {
            for _ in 0..100 {
                hub::yield_now();
            }
        });
        let before = hub::stats();
        while !g.is_finished() {
            hub::yield_now();
        }
        let after = hub::stats();
        g.join().unwrap();
        assert_eq!(
            after.bytes_copied - before.bytes_copied,
            0,
            "the occupant must never be copied"
        );
        // Each yield switches straight to the other side (a direct switch: nothing to copy), so
        // at least two switches per round of the two.
        assert!(
            after.switches - before.switches >= 200,
            "every yield really switched"
        );
    })
    .join()
    .unwrap();
}

#[test]
fn a_lone_yield_takes_the_fast_path_but_still_lets_timers_fire() {
    hub::run(|| {
        // Nobody else is ready: yield_now returns without switching, yet the hub's iteration budget
        // is charged, so a pending timer still fires while the greenlet spins on yields.
        let fired = std::rc::Rc::new(std::cell::Cell::new(false));
        let f = fired.clone();
        let _sleeper = hub::spawn(move || {
            hub::sleep(std::time::Duration::from_millis(5));
            f.set(true);
        });
        hub::yield_now(); // the sleeper parks
        let before = hub::stats();
        let t0 = std::time::Instant::now();
        while !fired.get() {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(10),
                "the timer never fired"
            );
            hub::yield_now();
        }
        let after = hub::stats();
        assert!(
            after.ticks > before.ticks,
            "the hub ran iterations between fast yields"
        );
    });
}

/// Two greenlets alternating 50 times each, logging the copy counters at every turn.
fn alternate_two_greenlets() -> Vec<(u8, u64, u64, u64)> {
    hub::run(|| {
        let log = Rc::new(RefCell::new(Vec::new()));
        let spawn_one = |name: u8| {
            let log = log.clone();
            hub::spawn(move || {
                let buf = [name; 1024];
                for _ in 0..50 {
                    std::hint::black_box(&buf);
                    let s = hub::stats();
                    log.borrow_mut()
                        .push((name, s.slice_saves, s.slice_restores, s.bytes_copied));
                    hub::yield_now();
                    assert!(buf.iter().all(|&b| b == name));
                }
            })
        };
        let (a, b) = (spawn_one(b'a'), spawn_one(b'b'));
        a.join().unwrap();
        b.join().unwrap();
        let log = log.borrow().clone();
        assert_eq!(log.len(), 100);
        log
    })
}

#[test]
fn alternating_greenlets_with_regions_of_their_own_copy_nothing() {
    let log = alternate_two_greenlets();
    for w in log[2..].windows(2) {
        let ((n0, s0, r0, c0), (n1, s1, r1, c1)) = (w[0], w[1]);
        assert_ne!(n0, n1, "a and b must alternate");
        assert_eq!((s1 - s0, r1 - r0, c1 - c0), (0, 0, 0), "nothing copied");
    }
}

#[test]
fn alternating_greenlets_sharing_one_region_copy_both_slices() {
    let log = std::thread::spawn(|| {
        hub::Config::new().max_stacks(1).install().unwrap();
        alternate_two_greenlets()
    })
    .join()
    .unwrap();
    {
        // From the third entry on, each switch between a and b saved one slice and restored the other.
        for w in log[2..].windows(2) {
            let ((n0, s0, r0, c0), (n1, s1, r1, c1)) = (w[0], w[1]);
            assert_ne!(n0, n1, "a and b must alternate");
            assert_eq!(s1 - s0, 1, "one save per switch");
            assert_eq!(r1 - r0, 1, "one restore per switch");
            let per_switch = c1 - c0;
            assert!(
                (2 * 1024..2 * 64 * 1024).contains(&per_switch),
                "copied {per_switch} bytes for two ~1 KiB slices"
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::asm;

    extern "C" fn yield_from_asm() {
        hub::yield_now();
    }

    /// Loads seed-derived values into rbx, rbp, r12-r15, calls a function that switches greenlets,
    /// and returns what those registers hold afterwards.
    fn callee_saved_across_yield(seed: u64) -> [u64; 6] {
        let mut out = [0u64; 6];
        // SAFETY: the asm saves and restores rbx and rbp itself, declares r12-r15 and every
        // caller-saved register (clobber_abi) clobbered, realigns the stack to 16 bytes for the call
        // and restores rsp; `out` is a valid 48-byte buffer it writes through rsi.
        unsafe {
            asm!(
                "push rbx",
                "push rbp",
                "lea rbx, [rdi + 1]",
                "lea rbp, [rdi + 2]",
                "lea r12, [rdi + 3]",
                "lea r13, [rdi + 4]",
                "lea r14, [rdi + 5]",
                "lea r15, [rdi + 6]",
                "mov rax, rsp",
                "and rsp, -16",
                "push rax",
                "push rsi",
                "call {f}",
                "pop rsi",
                "pop rax",
                "mov rsp, rax",
                "mov [rsi], rbx",
                "mov [rsi + 8], rbp",
                "mov [rsi + 16], r12",
                "mov [rsi + 24], r13",
                "mov [rsi + 32], r14",
                "mov [rsi + 40], r15",
                "pop rbp",
                "pop rbx",
                f = sym yield_from_asm,
                in("rdi") seed,
                in("rsi") out.as_mut_ptr(),
                out("r12") _, out("r13") _, out("r14") _, out("r15") _,
                clobber_abi("C"),
            );
        }
        out
    }

    #[test]
    fn callee_saved_registers_survive_switches() {
        hub::run(|| {
            let gs: Vec<_> = (1..=8u64)
                .map(|g| {
                    hub::spawn(move || {
                        for round in 0..200u64 {
                            let seed = g << 32 | round << 8;
                            let got = callee_saved_across_yield(seed);
                            let want = [seed + 1, seed + 2, seed + 3, seed + 4, seed + 5, seed + 6];
                            assert_eq!(
                                got, want,
                                "greenlet {g} round {round}: callee-saved registers changed"
                            );
                        }
                    })
                })
                .collect();
            // The main greenlet checks its own registers too.
            for round in 0..50 {
                let seed = 0xAB << 40 | round;
                assert_eq!(
                    callee_saved_across_yield(seed),
                    [seed + 1, seed + 2, seed + 3, seed + 4, seed + 5, seed + 6]
                );
            }
            for g in gs {
                g.join().unwrap();
            }
        });
    }

    fn mxcsr() -> u32 {
        let mut v = 0u32;
        // SAFETY: stmxcsr writes 4 bytes to a valid local.
        unsafe { asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack)) };
        v
    }

    fn set_mxcsr(v: u32) {
        // SAFETY: ldmxcsr reads 4 bytes from a valid local; only the control bits are changed by
        // callers (rounding mode), which is allowed state for this greenlet.
        unsafe { asm!("ldmxcsr [{}]", in(reg) &v, options(nostack)) };
    }

    fn x87_cw() -> u16 {
        let mut v = 0u16;
        // SAFETY: fnstcw writes 2 bytes to a valid local.
        unsafe { asm!("fnstcw [{}]", in(reg) &mut v, options(nostack)) };
        v
    }

    fn set_x87_cw(v: u16) {
        // SAFETY: fldcw reads 2 bytes from a valid local.
        unsafe { asm!("fldcw [{}]", in(reg) &v, options(nostack)) };
    }

    fn one_minus_tiny() -> f64 {
        std::hint::black_box(1.0f64) - std::hint::black_box(1e-17f64)
    }

    const RC_MASK: u32 = 0b11 << 13;
    const RC_TOWARD_ZERO: u32 = 0b11 << 13;

    #[test]
    fn float_control_state_is_per_greenlet() {
        hub::run(|| {
            let setter = hub::spawn(|| {
                let default = mxcsr();
                set_mxcsr((default & !RC_MASK) | RC_TOWARD_ZERO);
                set_x87_cw((x87_cw() & !(0b11 << 10)) | (0b11 << 10));
                for _ in 0..20 {
                    hub::yield_now();
                    assert_eq!(
                        mxcsr() & RC_MASK,
                        RC_TOWARD_ZERO,
                        "our rounding mode came back changed"
                    );
                    assert_eq!(
                        x87_cw() & (0b11 << 10),
                        0b11 << 10,
                        "our x87 rounding came back changed"
                    );
                    // Rounding toward zero is observable in arithmetic, not just in the register.
                    assert!(one_minus_tiny() < 1.0, "1 - 1e-17 rounds down toward zero");
                }
                set_mxcsr(default);
            });
            let others: Vec<_> = (0..4)
                .map(|_| {
                    hub::spawn(|| {
                        for _ in 0..20 {
                            assert_eq!(
                                mxcsr() & RC_MASK,
                                0,
                                "another greenlet's rounding mode leaked into us"
                            );
                            assert_eq!(
                                x87_cw() & (0b11 << 10),
                                0,
                                "another greenlet's x87 rounding leaked into us"
                            );
                            assert_eq!(one_minus_tiny(), 1.0, "1 - 1e-17 rounds to nearest: 1.0");
                            hub::yield_now();
                        }
                    })
                })
                .collect();
            setter.join().unwrap();
            for g in others {
                g.join().unwrap();
            }
        });
    }

    /// MXCSR bits 0-5: the sticky exception flags (invalid, denormal, divide-by-zero, overflow,
    /// underflow, precision).
    const FLAGS: u32 = 0x3F;
    const DIVIDE_BY_ZERO: u32 = 1 << 2;

    /// The switch loads each context's whole MXCSR, so the sticky exception flags are per greenlet
    /// too, as they are per thread: one greenlet's division by zero is not reported to another.
    #[test]
    #[cfg_attr(
        feature = "valgrind",
        ignore = "valgrind's x86 emulation does not raise MXCSR's exception flags"
    )]
    fn float_exception_flags_are_per_greenlet() {
        hub::run(|| {
            let raiser = hub::spawn(|| {
                set_mxcsr(mxcsr() & !FLAGS);
                let inf = std::hint::black_box(1.0f64) / std::hint::black_box(0.0f64);
                assert!(inf.is_infinite());
                assert_ne!(mxcsr() & DIVIDE_BY_ZERO, 0, "the division raised its flag");
                for _ in 0..10 {
                    hub::yield_now();
                    assert_ne!(
                        mxcsr() & DIVIDE_BY_ZERO,
                        0,
                        "our divide-by-zero flag was cleared by a switch"
                    );
                }
            });
            let observer = hub::spawn(|| {
                for _ in 0..10 {
                    hub::yield_now();
                    assert_eq!(
                        mxcsr() & DIVIDE_BY_ZERO,
                        0,
                        "another greenlet's divide-by-zero flag leaked into us"
                    );
                }
            });
            raiser.join().unwrap();
            observer.join().unwrap();
        });
    }
}

#[test]
fn backtrace_inside_a_greenlet_ends_cleanly() {
    let frames = hub::run(|| {
        let g = hub::spawn(|| {
            hub::yield_now();
            let bt = std::backtrace::Backtrace::force_capture();
            format!("{bt}")
        });
        g.join().unwrap()
    });
    assert!(
        frames.contains("backtrace_inside_a_greenlet_ends_cleanly"),
        "the backtrace shows the greenlet's closure:\n{frames}"
    );
}
