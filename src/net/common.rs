//! What every socket type has in the same shape: std conversions, raw descriptors, `try_clone`,
//! `set_nonblocking`, `take_error`, and (for the types std gives them) the timeout setters.
//! Each type is `struct T { inner: Arc<Registered<std type>> }`.

/// Conversions, descriptor traits, `Debug`, and the methods every socket has.
macro_rules! socket_common {
    ($ty:ident, $std:ty) => {
        impl $ty {
            /// Wraps a std socket already in non-blocking mode.
            fn wrap(s: $std) -> $ty {
                $ty {
                    inner: ::std::sync::Arc::new($crate::reactor::Registered::owning(s)),
                }
            }

            /// With `true`, calls that would block return `ErrorKind::WouldBlock` at once instead
            /// of parking the greenlet; with `false` (the default) they park. Shared by clones.
            ///
            /// # Errors
            /// None: the flag is kept by greenhub (the descriptor is always non-blocking
            /// underneath). The `Result` matches std's signature.
            pub fn set_nonblocking(&self, nonblocking: bool) -> ::std::io::Result<()> {
                self.inner.set_nonblocking(nonblocking);
                Ok(())
            }

            /// Returns and clears the socket's pending error (`SO_ERROR`).
            ///
            /// # Errors
            /// If the option cannot be read.
            pub fn take_error(&self) -> ::std::io::Result<Option<::std::io::Error>> {
                self.inner.get().take_error()
            }

            /// Another handle to the same socket, usable from another greenlet of the same hub at
            /// the same time (one reading while the other writes, say). Clones share the
            /// descriptor, its registration and its settings; it closes when the last one drops.
            ///
            /// # Errors
            /// None: nothing is duplicated. The `Result` matches std's signature.
            pub fn try_clone(&self) -> ::std::io::Result<$ty> {
                Ok($ty {
                    inner: self.inner.clone(),
                })
            }
        }

        impl From<$std> for $ty {
            /// Adopts a std socket: switches its descriptor to non-blocking mode (a greenhub socket
            /// must never block the hub); it registers with a hub on its first blocking call.
            fn from(s: $std) -> $ty {
                // Cannot fail on a valid descriptor; on an invalid one every later call reports
                // EBADF anyway.
                let _ = s.set_nonblocking(true);
                $ty::wrap(s)
            }
        }

        impl From<$ty> for $std {
            /// Gives the socket back to std, deregistered and in blocking mode (unless
            /// `set_nonblocking(true)` was called). If other clones still share it, the result is a
            /// `dup` of the descriptor that stays non-blocking (the flag is shared with the
            /// clones, which must not start blocking the hub).
            ///
            /// # Panics
            /// In that shared case, if the descriptor cannot be duplicated (out of descriptors).
            fn from(s: $ty) -> $std {
                match ::std::sync::Arc::try_unwrap(s.inner) {
                    Ok(reg) => reg.into_inner(|io, nonblocking| io.set_nonblocking(nonblocking)),
                    Err(shared) => shared.get().try_clone().unwrap_or_else(|e| {
                        panic!(
                            "greenhub: cannot duplicate a shared socket to convert it to std: {e}"
                        )
                    }),
                }
            }
        }

        impl ::std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> ::std::os::fd::RawFd {
                self.inner.get().as_raw_fd()
            }
        }

        impl ::std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> ::std::os::fd::BorrowedFd<'_> {
                self.inner.get().as_fd()
            }
        }

        impl ::std::os::fd::IntoRawFd for $ty {
            /// As the conversion to the std type: deregistered, blocking unless set otherwise.
            fn into_raw_fd(self) -> ::std::os::fd::RawFd {
                <$std>::from(self).into_raw_fd()
            }
        }

        impl From<$ty> for ::std::os::fd::OwnedFd {
            /// As the conversion to the std type: deregistered, blocking unless set otherwise.
            fn from(s: $ty) -> ::std::os::fd::OwnedFd {
                <$std>::from(s).into()
            }
        }

        impl From<::std::os::fd::OwnedFd> for $ty {
            /// Adopts a socket descriptor, as `From` the std type.
            fn from(fd: ::std::os::fd::OwnedFd) -> $ty {
                $ty::from(<$std>::from(fd))
            }
        }

        impl ::std::os::fd::FromRawFd for $ty {
            /// Adopts `fd` as the std type's `from_raw_fd` does, then as `From` that type.
            ///
            /// # Safety
            /// `fd` must be an open socket of the right kind that the caller owns and hands over
            /// (std's requirements for `from_raw_fd`).
            #[allow(unsafe_code)] // implementing std's unsafe trait method
            unsafe fn from_raw_fd(fd: ::std::os::fd::RawFd) -> $ty {
                // SAFETY: the caller upholds from_raw_fd's contract, which we forward unchanged.
                $ty::from(unsafe { <$std as ::std::os::fd::FromRawFd>::from_raw_fd(fd) })
            }
        }

        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(self.inner.get(), f)
            }
        }
    };
}

/// `set_read_timeout`, `set_write_timeout` and their getters.
macro_rules! socket_timeouts {
    ($ty:ident) => {
        impl $ty {
            /// Sets how long a read may wait; `None` waits forever. When it expires the call
            /// returns `ErrorKind::WouldBlock`, as std's does on Unix. Shared by clones.
            ///
            /// # Errors
            /// `InvalidInput` for a zero duration, as std.
            pub fn set_read_timeout(
                &self,
                dur: Option<::std::time::Duration>,
            ) -> ::std::io::Result<()> {
                self.inner.set_timeout($crate::reactor::Dir::Read, dur)
            }

            /// Sets how long a write may wait; `None` waits forever. When it expires the call
            /// returns `ErrorKind::WouldBlock`, as std's does on Unix. Shared by clones.
            ///
            /// # Errors
            /// `InvalidInput` for a zero duration, as std.
            pub fn set_write_timeout(
                &self,
                dur: Option<::std::time::Duration>,
            ) -> ::std::io::Result<()> {
                self.inner.set_timeout($crate::reactor::Dir::Write, dur)
            }

            /// The read timeout (`None`: reads wait forever).
            ///
            /// # Errors
            /// None; the `Result` matches std's signature.
            pub fn read_timeout(&self) -> ::std::io::Result<Option<::std::time::Duration>> {
                Ok(self.inner.timeout($crate::reactor::Dir::Read))
            }

            /// The write timeout (`None`: writes wait forever).
            ///
            /// # Errors
            /// None; the `Result` matches std's signature.
            pub fn write_timeout(&self) -> ::std::io::Result<Option<::std::time::Duration>> {
                Ok(self.inner.timeout($crate::reactor::Dir::Write))
            }
        }
    };
}

/// `io::Read` and `io::Write` for a stream type and its shared reference (writes never raise
/// SIGPIPE), each one `Registered::stream_*` call around a raw `recv`/`readv`/`send`/`sendmsg`.
/// `short_reads: true` lets a short read save the next read's syscall
/// (`Registered::stream_read`: TCP only); `false` makes every read try.
macro_rules! stream_io {
    ($ty:ident, $std:ty, short_reads: $short_reads:expr) => {
        impl ::std::io::Read for &$ty {
            #[inline]
            fn read(&mut self, buf: &mut [u8]) -> ::std::io::Result<usize> {
                self.inner.stream_read(buf.len(), $short_reads, |fd| {
                    $crate::sys::socket::recv(fd, buf)
                })
            }

            fn read_vectored(
                &mut self,
                bufs: &mut [::std::io::IoSliceMut<'_>],
            ) -> ::std::io::Result<usize> {
                // What one readv takes: at most IOV_MAX buffers.
                let len = bufs
                    .iter()
                    .take($crate::sys::socket::IOV_MAX)
                    .map(|b| b.len())
                    .sum();
                self.inner.stream_read(len, $short_reads, |fd| {
                    $crate::sys::socket::recv_vectored(fd, bufs)
                })
            }
        }

        impl ::std::io::Write for &$ty {
            #[inline]
            fn write(&mut self, buf: &[u8]) -> ::std::io::Result<usize> {
                self.inner
                    .stream_write(buf.len(), |fd| $crate::sys::socket::send(fd, buf))
            }

            fn write_vectored(
                &mut self,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::io::Result<usize> {
                // What one sendmsg takes: at most IOV_MAX buffers.
                let len = bufs
                    .iter()
                    .take($crate::sys::socket::IOV_MAX)
                    .map(|b| b.len())
                    .sum();
                self.inner
                    .stream_write(len, |fd| $crate::sys::socket::send_vectored(fd, bufs))
            }

            fn flush(&mut self) -> ::std::io::Result<()> {
                Ok(())
            }
        }

        impl ::std::io::Read for $ty {
            #[inline]
            fn read(&mut self, buf: &mut [u8]) -> ::std::io::Result<usize> {
                (&*self).read(buf)
            }

            fn read_vectored(
                &mut self,
                bufs: &mut [::std::io::IoSliceMut<'_>],
            ) -> ::std::io::Result<usize> {
                (&*self).read_vectored(bufs)
            }
        }

        impl ::std::io::Write for $ty {
            #[inline]
            fn write(&mut self, buf: &[u8]) -> ::std::io::Result<usize> {
                (&*self).write(buf)
            }

            fn write_vectored(
                &mut self,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::io::Result<usize> {
                (&*self).write_vectored(bufs)
            }

            fn flush(&mut self) -> ::std::io::Result<()> {
                Ok(())
            }
        }
    };
}
