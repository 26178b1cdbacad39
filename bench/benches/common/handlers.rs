//! The greenhub echo handlers used by `echo.rs` and `idle_memory.rs`: one definition, so the
//! throughput and memory figures describe the same code.

use std::io::{Read, Write};

/// The natural handler: a 4 KiB buffer on the greenlet's stack. Its own function (never inlined)
/// so the heap variant's frame does not reserve the array too.
#[inline(never)]
pub fn greenhub_echo_stack(mut s: greenhub::net::TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// The same with the buffer on the heap, allocated once per connection.
#[inline(never)]
pub fn greenhub_echo_heap(mut s: greenhub::net::TcpStream) {
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}
