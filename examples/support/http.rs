//! The connection handler of `examples/http_hello.rs`: HTTP/1.1 keep-alive, in plain blocking
//! `std::io` style (a `BufReader<&TcpStream>` for the requests, `&TcpStream` for the answers,
//! `httparse` for the request head). A module of its own so that `tests/http_hello.rs` runs the
//! very same code against hostile clients.
//!
//! What a server others will copy must get right, and does here:
//! - **Bounded memory per connection.** The head is read with a byte budget ([`MAX_HEAD`]): a
//!   header line that never ends costs at most that much, then `431`. At most [`MAX_HEADERS`]
//!   header fields (more: `431`).
//! - **Request framing (RFC 9112 §6).** A `Content-Length` that is not one decimal number (or
//!   disagrees with another one) is `400`, never "no body": reading it as 0 would answer the body
//!   as a second request (request smuggling). `Transfer-Encoding: chunked` bodies are decoded
//!   (and discarded); any other transfer coding is `501`; both headers at once is `400`. Every
//!   error answer closes the connection, since the next request's start is unknown.
//! - **Connection management.** HTTP/1.0 closes after the answer unless the client asked for
//!   `keep-alive`, and every answer that closes says `Connection: close`.
//! - **Time bounds.** The whole head must arrive within the `head_timeout` given to [`serve`]
//!   (a `408` then, and the connection closes), which stops a client that trickles a byte at a
//!   time; a client that stops sending or reading altogether is stopped by the server's
//!   idle timeout (`StreamServer::set_idle_timeout`), which `serve` relies on.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::Duration;

use greenhub::net::TcpStream;

/// The answer's body.
pub const BODY: &str = "Hello, world!";
/// Request heads (request line and header fields) longer than this get `431`.
pub const MAX_HEAD: usize = 16 * 1024;
/// Requests with more header fields than this get `431`.
pub const MAX_HEADERS: usize = 100;
/// The longest chunk-size line (with extensions) of a chunked body.
const MAX_CHUNK_LINE: usize = 1024;

/// Why reading or framing a request failed: the status to answer with before closing.
#[derive(Debug)]
enum Refuse {
    BadRequest,
    TooLarge,
    Timeout,
    NotImplemented,
}

impl Refuse {
    fn status(&self) -> &'static str {
        match self {
            Refuse::BadRequest => "400 Bad Request",
            Refuse::TooLarge => "431 Request Header Fields Too Large",
            Refuse::Timeout => "408 Request Timeout",
            Refuse::NotImplemented => "501 Not Implemented",
        }
    }
}

/// What went wrong on a connection.
enum Failure {
    /// The client broke the protocol: answer, then close.
    Refuse(Refuse),
    /// The connection itself failed (reset, idle timeout): just close.
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

/// Serves requests on `stream` until the client closes, asks to close, or breaks the protocol.
/// Each request head must arrive within `head_timeout`.
///
/// # Errors
/// The I/O error that ended the connection (the idle timeout's `WouldBlock`, a reset, ...).
pub fn serve(stream: &TcpStream, head_timeout: Duration) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut writer = stream;
    let mut head = Vec::new();
    loop {
        match serve_one(&mut reader, &mut writer, &mut head, head_timeout) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(Failure::Refuse(r)) => {
                let answer = format!(
                    "HTTP/1.1 {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    r.status()
                );
                return writer.write_all(answer.as_bytes());
            }
            Err(Failure::Io(e)) => return Err(e),
        }
    }
}

/// Reads and answers one request; `Ok(false)` when the connection should close cleanly.
fn serve_one(
    reader: &mut BufReader<&TcpStream>,
    writer: &mut &TcpStream,
    head: &mut Vec<u8>,
    head_timeout: Duration,
) -> Result<bool, Failure> {
    let got = match greenhub::timeout::timeout(head_timeout, || read_head(reader, head)) {
        Ok(r) => r?,
        Err(_elapsed) if head.is_empty() => return Ok(false), // idle between requests: close
        Err(_elapsed) => return Err(Failure::Refuse(Refuse::Timeout)),
    };
    if !got {
        return Ok(false); // the client closed between requests
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Err(Failure::Refuse(Refuse::TooLarge)),
        Ok(httparse::Status::Partial) | Err(_) => return Err(Failure::Refuse(Refuse::BadRequest)),
    }
    let http11 = req.version == Some(1);
    let mut keep_alive = http11;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| Failure::Refuse(Refuse::BadRequest));
        if h.name.eq_ignore_ascii_case("connection") {
            for token in value?.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && !http11 {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            // One decimal number, possibly repeated identically ("5, 5" or two fields).
            for v in value?.split(',').map(str::trim) {
                let n = parse_decimal(v).ok_or(Failure::Refuse(Refuse::BadRequest))?;
                if content_length.is_some_and(|m| m != n) {
                    return Err(Failure::Refuse(Refuse::BadRequest));
                }
                content_length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only `chunked`, and only as the one coding (anything else cannot be framed here).
            transfer_encoding = true;
            for coding in value?.split(',').map(str::trim) {
                if coding.eq_ignore_ascii_case("chunked") && !chunked {
                    chunked = true;
                } else {
                    return Err(Failure::Refuse(Refuse::NotImplemented));
                }
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue = value?.trim().eq_ignore_ascii_case("100-continue");
        }
    }
    if transfer_encoding && (content_length.is_some() || !http11) {
        // Both framings at once is the classic smuggling vector; HTTP/1.0 has no chunking.
        return Err(Failure::Refuse(Refuse::BadRequest));
    }
    if expect_continue && http11 && (chunked || content_length.is_some_and(|n| n > 0)) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    // Skip the body so the next request starts where it should.
    if chunked {
        skip_chunked(reader)?;
    } else if let Some(n) = content_length {
        let skipped = io::copy(&mut reader.by_ref().take(n), &mut io::sink())?;
        if skipped < n {
            return Ok(false); // the client closed mid-body
        }
    }
    let connection = match (http11, keep_alive) {
        (_, false) => "Connection: close\r\n",
        (false, true) => "Connection: keep-alive\r\n",
        (true, true) => "",
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{connection}\r\n{BODY}",
        BODY.len()
    );
    writer.write_all(response.as_bytes())?;
    Ok(keep_alive)
}

/// `1*DIGIT`, as RFC 9110 §8.6 defines a Content-Length value (no sign, no spaces, no hex).
fn parse_decimal(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok() // None on overflow
}

/// Reads one line into `line` (cleared first), taking at most `limit` bytes from `reader`;
/// `Ok(false)` if the line did not end within them (or the stream ended first).
fn read_line_bounded(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    limit: usize,
) -> io::Result<bool> {
    line.clear();
    reader.take(limit as u64).read_until(b'\n', line)?;
    Ok(line.last() == Some(&b'\n'))
}

/// Reads one request head (up to and including the blank line) into `head`, within
/// [`MAX_HEAD`] bytes; `Ok(false)` at a clean end of stream before a request.
fn read_head(reader: &mut BufReader<&TcpStream>, head: &mut Vec<u8>) -> Result<bool, Failure> {
    head.clear();
    loop {
        let start = head.len();
        let budget = MAX_HEAD - start;
        // Never more than the budget: one endless line costs MAX_HEAD bytes, not the client's
        // choice.
        let n = reader
            .by_ref()
            .take(budget as u64)
            .read_until(b'\n', head)?;
        if n == 0 {
            if start == 0 {
                return Ok(false);
            }
            return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        if head.last() != Some(&b'\n') {
            if head.len() >= MAX_HEAD {
                return Err(Failure::Refuse(Refuse::TooLarge));
            }
            return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        let line = &head[start..];
        if line == b"\r\n" || line == b"\n" {
            if start == 0 {
                head.clear(); // an empty line before a request (RFC 9112 §2.2 allows them)
                continue;
            }
            return Ok(true);
        }
    }
}

/// Reads and discards a chunked body, its trailer fields and the final blank line
/// (RFC 9112 §7.1).
fn skip_chunked(reader: &mut BufReader<&TcpStream>) -> Result<(), Failure> {
    let bad = || Failure::Refuse(Refuse::BadRequest);
    let mut line = Vec::new();
    loop {
        if !read_line_bounded(reader, &mut line, MAX_CHUNK_LINE)? {
            return Err(bad());
        }
        let text = std::str::from_utf8(&line).map_err(|_| bad())?;
        let size = text
            .trim_end_matches(['\r', '\n'])
            .split(';') // chunk extensions are ignored
            .next()
            .unwrap_or("")
            .trim();
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let size = u64::from_str_radix(size, 16).map_err(|_| bad())?; // overflow
        if size == 0 {
            break;
        }
        let skipped = io::copy(&mut reader.by_ref().take(size), &mut io::sink())?;
        if skipped < size {
            return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        if !read_line_bounded(reader, &mut line, 2)? || (line != b"\r\n" && line != b"\n") {
            return Err(bad());
        }
    }
    // Trailer fields until the blank line, within the head's budget.
    let mut budget = MAX_HEAD;
    loop {
        if !read_line_bounded(reader, &mut line, budget)? {
            return Err(Failure::Refuse(Refuse::TooLarge));
        }
        if line == b"\r\n" || line == b"\n" {
            return Ok(());
        }
        budget -= line.len();
    }
}
