//! net::lookup_host. The thread pool is process-wide and this file reconfigures it, so it is a
//! test binary of its own.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use greenhub::{hub, net, threadpool};

fn is_localhost_80(a: &SocketAddr) -> bool {
    a.ip().is_loopback() && a.port() == 80
}

#[test]
fn lookup_host_parks_only_its_caller_and_honours_a_timeout_scope() {
    threadpool::configure(threadpool::Config::new().max_threads(1));
    hub::run(|| {
        let ticks = Rc::new(Cell::new(0u32));
        let t = ticks.clone();
        let ticker = hub::spawn(move || loop {
            hub::sleep(Duration::from_millis(1));
            t.set(t.get() + 1);
        });
        // The pool's only thread is busy for 200 ms: the lookup queues behind it.
        let busy =
            hub::spawn(|| threadpool::unblock(|| std::thread::sleep(Duration::from_millis(200))));
        hub::yield_now();
        let t0 = Instant::now();
        let addrs: Vec<SocketAddr> = net::lookup_host("localhost:80").unwrap().collect();
        let took = t0.elapsed();
        assert!(
            !addrs.is_empty() && addrs.iter().all(is_localhost_80),
            "{addrs:?}"
        );
        assert!(
            took >= Duration::from_millis(150),
            "the lookup did not wait for the pool: {took:?}"
        );
        assert!(
            ticks.get() >= 50,
            "only {} ticks while the lookup waited {took:?}",
            ticks.get()
        );
        busy.join().unwrap();

        // Again with the pool busy, inside a 30 ms scope: the wait ends with TimedOut on time.
        let busy =
            hub::spawn(|| threadpool::unblock(|| std::thread::sleep(Duration::from_millis(300))));
        hub::yield_now();
        let t0 = Instant::now();
        let r = greenhub::timeout(Duration::from_millis(30), || {
            net::lookup_host(("localhost", 80))
        });
        let took = t0.elapsed();
        match r {
            Err(greenhub::Elapsed) => {}
            Ok(Err(e)) => panic!("the scope should own the expiry, got {e}"),
            Ok(Ok(a)) => panic!(
                "resolved {:?} although the pool was busy",
                a.collect::<Vec<_>>()
            ),
        }
        assert!(
            took >= Duration::from_millis(30) && took < Duration::from_millis(150),
            "{took:?}"
        );
        let e = greenhub::timeout::Timeout::start(Duration::from_millis(10));
        let err = net::lookup_host("localhost:80").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(e.expired());
        drop(e);
        busy.join().unwrap();
        ticker.kill();
    });
}

#[test]
fn literals_resolve_at_once_and_errors_are_std_s() {
    hub::run(|| {
        let a: Vec<_> = net::lookup_host("127.0.0.1:8080").unwrap().collect();
        assert_eq!(a, vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]);
        let a: Vec<_> = net::lookup_host(("::1", 9)).unwrap().collect();
        assert_eq!(a, vec!["[::1]:9".parse::<SocketAddr>().unwrap()]);
        assert!(
            net::lookup_host("localhost").is_err(),
            "no port: std's InvalidInput"
        );
    });
    // Outside any hub it runs inline.
    std::thread::spawn(|| {
        let a: Vec<_> = net::lookup_host("localhost:80").unwrap().collect();
        assert!(a.iter().all(is_localhost_80));
    })
    .join()
    .unwrap();
}
