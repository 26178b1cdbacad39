//! File system calls that park only the calling greenlet: each one runs on the thread pool
//! ([`crate::remote::threadpool::unblock`]), since regular files never report "would block" to `epoll`.
//!
//! ```
//! use greenhub::{fs, hub};
//!
//! let dir = std::env::temp_dir().join(format!("greenhub-fs-doc-{}", std::process::id()));
//! hub::run(move || -> std::io::Result<()> {
//!     fs::create_dir_all(&dir)?;
//!     let path = dir.join("hello.txt");
//!     fs::write(&path, "hello")?;
//!     assert_eq!(fs::read_to_string(&path)?, "hello");
//!     fs::remove_file(&path)?;
//!     fs::remove_dir(&dir)
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Outside any hub these run inline, like std. Each call costs a hop to a pool thread and back
//! (tens of microseconds): batch small reads with a `BufReader`.

#![deny(unsafe_code)]

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::remote::threadpool::unblock;

/// Reads a whole file (std's `fs::read`).
///
/// # Errors
/// As [`std::fs::read`].
pub fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let p = path.as_ref().to_owned();
    unblock(move || std::fs::read(p))
}

/// Reads a whole file as UTF-8 (std's `fs::read_to_string`).
///
/// # Errors
/// As [`std::fs::read_to_string`].
pub fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    let p = path.as_ref().to_owned();
    unblock(move || std::fs::read_to_string(p))
}

/// Writes `contents` to a file, creating or truncating it (std's `fs::write`). The bytes are
/// copied once to travel to the pool thread.
///
/// # Errors
/// As [`std::fs::write`].
pub fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let p = path.as_ref().to_owned();
    let c = contents.as_ref().to_vec();
    unblock(move || std::fs::write(p, c))
}

/// Removes a file (std's `fs::remove_file`).
///
/// # Errors
/// As [`std::fs::remove_file`].
pub fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    let p = path.as_ref().to_owned();
    unblock(move || std::fs::remove_file(p))
}

/// Creates a directory and its missing parents (std's `fs::create_dir_all`).
///
/// # Errors
/// As [`std::fs::create_dir_all`].
pub fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let p = path.as_ref().to_owned();
    unblock(move || std::fs::create_dir_all(p))
}

/// Removes an empty directory (std's `fs::remove_dir`).
///
/// # Errors
/// As [`std::fs::remove_dir`].
pub fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let p = path.as_ref().to_owned();
    unblock(move || std::fs::remove_dir(p))
}

/// A file's metadata (std's `fs::metadata`).
///
/// # Errors
/// As [`std::fs::metadata`].
pub fn metadata(path: impl AsRef<Path>) -> io::Result<std::fs::Metadata> {
    let p = path.as_ref().to_owned();
    unblock(move || std::fs::metadata(p))
}

/// An open file whose every operation runs on the thread pool (std's `fs::File`).
///
/// `Read`, `Write` and `Seek` are implemented for `File` and `&File`, as std does. Reads and
/// writes copy through a buffer that travels to the pool thread, at most 1 MiB per call.
pub struct File {
    /// Shared with the job in flight; std implements I/O on `&std::fs::File`.
    inner: Arc<std::fs::File>,
    path: Option<PathBuf>,
}

/// The most bytes one `read`/`write` call moves (a short count beyond, as std allows).
const MAX_CHUNK: usize = 1 << 20;

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File").field("path", &self.path).finish()
    }
}

impl File {
    /// Opens a file for reading.
    ///
    /// # Errors
    /// As [`std::fs::File::open`].
    pub fn open(path: impl AsRef<Path>) -> io::Result<File> {
        let p = path.as_ref().to_owned();
        let q = p.clone();
        let f = unblock(move || std::fs::File::open(q))?;
        Ok(File {
            inner: Arc::new(f),
            path: Some(p),
        })
    }

    /// Creates (or truncates) a file for writing.
    ///
    /// # Errors
    /// As [`std::fs::File::create`].
    pub fn create(path: impl AsRef<Path>) -> io::Result<File> {
        let p = path.as_ref().to_owned();
        let q = p.clone();
        let f = unblock(move || std::fs::File::create(q))?;
        Ok(File {
            inner: Arc::new(f),
            path: Some(p),
        })
    }

    /// Opens a file with std's options (`OpenOptions::new().append(true)`, ...).
    ///
    /// # Errors
    /// As [`std::fs::OpenOptions::open`].
    pub fn open_with(options: &std::fs::OpenOptions, path: impl AsRef<Path>) -> io::Result<File> {
        let p = path.as_ref().to_owned();
        let q = p.clone();
        let o = options.clone();
        let f = unblock(move || o.open(q))?;
        Ok(File {
            inner: Arc::new(f),
            path: Some(p),
        })
    }

    /// Wraps an open std file.
    pub fn from_std(f: std::fs::File) -> File {
        File {
            inner: Arc::new(f),
            path: None,
        }
    }

    /// Flushes data and metadata to the disk (std's `sync_all`).
    ///
    /// # Errors
    /// As [`std::fs::File::sync_all`].
    pub fn sync_all(&self) -> io::Result<()> {
        let f = self.inner.clone();
        unblock(move || f.sync_all())
    }

    /// Truncates or extends the file (std's `set_len`).
    ///
    /// # Errors
    /// As [`std::fs::File::set_len`].
    pub fn set_len(&self, size: u64) -> io::Result<()> {
        let f = self.inner.clone();
        unblock(move || f.set_len(size))
    }

    /// The file's metadata.
    ///
    /// # Errors
    /// As [`std::fs::File::metadata`].
    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        let f = self.inner.clone();
        unblock(move || f.metadata())
    }

    fn do_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let f = self.inner.clone();
        let n = buf.len().min(MAX_CHUNK);
        let data = unblock(move || {
            let mut v = vec![0u8; n];
            let k = (&*f).read(&mut v)?;
            v.truncate(k);
            Ok::<_, io::Error>(v)
        })?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    fn do_write(&self, buf: &[u8]) -> io::Result<usize> {
        let f = self.inner.clone();
        let data = buf[..buf.len().min(MAX_CHUNK)].to_vec();
        unblock(move || (&*f).write(&data))
    }

    fn do_seek(&self, pos: SeekFrom) -> io::Result<u64> {
        let f = self.inner.clone();
        unblock(move || (&*f).seek(pos))
    }
}

impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.do_read(buf)
    }
}

impl Read for &File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.do_read(buf)
    }
}

impl Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.do_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // std's File has no user-space buffer either
    }
}

impl Write for &File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.do_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.do_seek(pos)
    }
}

impl Seek for &File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.do_seek(pos)
    }
}
