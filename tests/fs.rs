//! `fs`: file calls offloaded to the thread pool.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use greenhub::{fs, hub};

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("greenhub-fs-{}-{name}", std::process::id()))
}

#[test]
fn read_write_round_trip() {
    let p = scratch("rw");
    hub::run(move || {
        fs::write(&p, b"hello world").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello world");
        assert_eq!(fs::read_to_string(&p).unwrap(), "hello world");
        assert_eq!(fs::metadata(&p).unwrap().len(), 11);
        fs::remove_file(&p).unwrap();
        assert_eq!(
            fs::read(&p).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
    });
}

#[test]
fn file_read_write_seek() {
    let p = scratch("file");
    hub::run(move || {
        let mut f = fs::File::create(&p).unwrap();
        f.write_all(b"0123456789").unwrap();
        f.seek(SeekFrom::Start(2)).unwrap();
        f.write_all(b"AB").unwrap();
        f.sync_all().unwrap();
        drop(f);
        let mut f = fs::File::open(&p).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "01AB456789");
        assert_eq!(f.seek(SeekFrom::End(-3)).unwrap(), 7);
        let mut tail = [0u8; 8];
        let n = (&f).read(&mut tail).unwrap();
        assert_eq!(&tail[..n], b"789");
        fs::remove_file(&p).unwrap();
    });
}

#[test]
fn other_greenlets_run_while_a_file_call_waits() {
    let p = scratch("concurrent");
    let (ran_during, data) = hub::run(move || {
        let big = vec![7u8; 4 << 20];
        let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let t2 = ticks.clone();
        let ticker = hub::spawn(move || loop {
            t2.set(t2.get() + 1);
            hub::yield_now();
        });
        let before = ticks.get();
        fs::write(&p, &big).unwrap();
        let data = fs::read(&p).unwrap();
        let ran = ticks.get() > before;
        ticker.kill();
        fs::remove_file(&p).unwrap();
        (ran, data.len())
    });
    assert!(
        ran_during,
        "the hub did not run other greenlets during file I/O"
    );
    assert_eq!(data, 4 << 20);
}
