//! Stack regions: greenlets that run get addresses of their own, exclusive greenlets never share
//! theirs (so lending the stack to other threads or pinning intrusive nodes on it is sound), and
//! idle regions give their pages back.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use greenhub::hub;
use support::{stack_churners, with_max_stacks};

mod support;

#[test]
fn an_exclusive_greenlet_can_lend_its_locals_to_scoped_threads_while_it_blocks() {
    // One shared region for everybody else: without exclusivity the churners would run over the
    // lender's addresses while the scoped thread writes them.
    with_max_stacks(1, || {
        hub::run(|| {
            let ok = Rc::new(Cell::new(true));
            let lender = hub::Builder::new().exclusive_stack().spawn(|| {
                let mut data = vec![0u32; 0]; // heap: the control
                let mut local = [0u32; 8192]; // the stack array lent to the thread
                let stop = AtomicBool::new(false);
                std::thread::scope(|s| {
                    s.spawn(|| {
                        let mut round = 1u32;
                        while !stop.load(Ordering::Acquire) {
                            for (i, w) in local.iter_mut().enumerate() {
                                *w = round.wrapping_mul(i as u32 + 1);
                            }
                            round += 1;
                        }
                        data.push(round - 1);
                    });
                    // Blocks cooperatively while the thread works on `local`: others run.
                    for _ in 0..20 {
                        hub::sleep(Duration::from_millis(2));
                    }
                    stop.store(true, Ordering::Release);
                });
                let last = data[0];
                local
                    .iter()
                    .enumerate()
                    .all(|(i, &w)| w == last.wrapping_mul(i as u32 + 1))
            });
            let churners = stack_churners(4, 2_000, &ok);
            assert!(
                lender.join().unwrap(),
                "the scoped thread's writes were overwritten"
            );
            for c in churners {
                c.join().unwrap();
            }
            assert!(ok.get(), "a churner's stack was overwritten");
        });
    });
}

#[test]
fn exclusive_greenlets_never_share_a_region_even_beyond_max_stacks() {
    with_max_stacks(2, || {
        hub::run(|| {
            let before = hub::stats();
            let gs: Vec<_> = (0..8)
                .map(|k| {
                    hub::Builder::new().exclusive_stack().spawn(move || {
                        let buf = [k as u8; 4096];
                        for _ in 0..20 {
                            hub::yield_now();
                            std::hint::black_box(&buf);
                        }
                        buf.iter().all(|&b| b == k as u8)
                    })
                })
                .collect();
            for g in gs {
                assert!(g.join().unwrap());
            }
            let after = hub::stats();
            assert_eq!(
                after.bytes_copied, before.bytes_copied,
                "an exclusive stack was copied"
            );
            assert!(
                after.stacks >= 8,
                "8 live exclusive greenlets need 8 regions: {after:?}"
            );
        });
    });
}

#[test]
fn exclusive_stacks_for_the_whole_hub_copy_nothing() {
    std::thread::spawn(|| {
        hub::Config::new()
            .max_stacks(1)
            .exclusive_stacks()
            .install()
            .unwrap();
        hub::run(|| {
            let ok = Rc::new(Cell::new(true));
            for c in stack_churners(6, 200, &ok) {
                c.join().unwrap();
            }
            assert!(ok.get());
            let s = hub::stats();
            assert_eq!(s.bytes_copied, 0, "{s:?}");
            assert_eq!(s.slice_saves, 0, "{s:?}");
        });
    })
    .join()
    .unwrap();
}

#[test]
fn greenlets_beyond_max_stacks_share_regions_and_keep_their_bytes() {
    with_max_stacks(4, || {
        hub::run(|| {
            let ok = Rc::new(Cell::new(true));
            for c in stack_churners(12, 100, &ok) {
                c.join().unwrap();
            }
            assert!(ok.get(), "a shared region lost a greenlet's bytes");
            let s = hub::stats();
            assert!(s.stacks <= 4, "mapped {} regions over a cap of 4", s.stacks);
            assert!(
                s.slice_saves > 0,
                "12 live greenlets in 4 regions must be sliced"
            );
        });
    });
}

#[test]
fn a_hot_greenlet_spawned_after_many_sleepers_runs_without_copying() {
    with_max_stacks(8, || {
        hub::run(|| {
            // 100 sleepers bound to the 8 regions first.
            let sleepers: Vec<_> = (0..100)
                .map(|_| hub::spawn(|| hub::sleep(Duration::from_secs(3600))))
                .collect();
            hub::yield_now();
            // Two hot greenlets come later: each is bound to a region whose occupant sleeps, is
            // copied in once, and then alternates with the other copy-free.
            let log = Rc::new(RefCell::new(Vec::new()));
            let hot: Vec<_> = (0..2)
                .map(|_| {
                    let log = log.clone();
                    hub::spawn(move || {
                        for _ in 0..100 {
                            log.borrow_mut().push(hub::stats().bytes_copied);
                            hub::yield_now();
                        }
                    })
                })
                .collect();
            for h in hot {
                h.join().unwrap();
            }
            let log = log.borrow();
            assert_eq!(
                log[10],
                log[log.len() - 1],
                "the hot pair kept copying: {log:?}"
            );
            for s in &sleepers {
                s.kill();
            }
        });
    });
}

#[test]
fn idle_regions_give_their_pages_back() {
    with_max_stacks(64, || {
        hub::run(|| {
            let before = hub::stats().stack_releases;
            // 64 greenlets alive at once, each deep in its own region.
            let gs: Vec<_> = (0..64)
                .map(|_| {
                    hub::spawn(|| {
                        let buf = [7u8; 128 * 1024];
                        hub::sleep(Duration::from_millis(5));
                        buf[1000]
                    })
                })
                .collect();
            for g in gs {
                assert_eq!(g.join().unwrap(), 7);
            }
            let t = Instant::now();
            hub::sleep(Duration::from_millis(2)); // the hub blocks: idle regions are released
            let s = hub::stats();
            assert!(s.stacks >= 60, "{s:?}");
            assert!(
                s.stack_releases - before >= s.stacks - 1 - 4,
                "only {} of {} free regions released (4 kept warm) after {:?}",
                s.stack_releases - before,
                s.stacks,
                t.elapsed()
            );
        });
    });
}

#[test]
fn greenlets_parked_half_a_second_are_sliced_to_the_heap_and_keep_their_bytes() {
    with_max_stacks(64, || {
        hub::run(|| {
            let go = Rc::new(greenhub::sync::Event::new());
            let gs: Vec<_> = (0..8u8)
                .map(|k| {
                    let go = go.clone();
                    hub::spawn(move || {
                        let mut buf = [k; 64 * 1024]; // 16 pages in its own region
                        std::hint::black_box(&mut buf);
                        go.wait().unwrap();
                        std::hint::black_box(&mut buf);
                        buf.iter().all(|&b| b == k)
                    })
                })
                .collect();
            hub::yield_now();
            let before = hub::stats();
            hub::sleep(Duration::from_millis(900)); // the hub idles: the regions go cold
            let after = hub::stats();
            assert!(
                after.slice_saves - before.slice_saves >= 8,
                "the idle occupants were not sliced: {before:?} -> {after:?}"
            );
            assert!(
                after.stack_releases - before.stack_releases >= 8,
                "their regions kept their pages: {before:?} -> {after:?}"
            );
            assert!(after.slice_bytes_reserved >= 8 * 64 * 1024);
            go.set();
            for g in gs {
                assert!(
                    g.join().unwrap(),
                    "a greenlet's bytes did not survive the release"
                );
            }
        });
    });
}

/// The `VmFlags` of the mapping of this process that contains `addr` (Linux `/proc/self/smaps`).
#[cfg(target_os = "linux")]
fn vm_flags_at(addr: usize) -> Option<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo <= addr && addr < hi;
                continue;
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.trim().to_string());
            }
        }
    }
    None
}

#[cfg(target_os = "linux")]
#[test]
fn greenlet_stacks_never_get_transparent_huge_pages() {
    // A stack touches a few pages at its top; a 2 MiB huge page per greenlet (THP set to
    // `always`) would cost a thousand times that. The regions are advised MADV_NOHUGEPAGE ("nh").
    let flags = hub::spawn(|| {
        let marker = 0u8;
        vm_flags_at(std::hint::black_box(&marker) as *const u8 as usize)
    })
    .join()
    .unwrap()
    .expect("the greenlet's stack is in /proc/self/smaps");
    assert!(
        flags.split_whitespace().any(|f| f == "nh"),
        "VmFlags of a greenlet stack: {flags}"
    );
}
