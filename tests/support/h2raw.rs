//! A raw HTTP/2 client for hostile requests: it writes frames and header blocks byte by
//! byte (HPACK literals, any name, any order), which no well-behaved client library would
//! send, and reports what came back for a stream: a response status, a reset, a GOAWAY.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;

pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;

/// What a stream ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response: its status and body.
    Response { status: u16, body: Vec<u8> },
    /// RST_STREAM with this error code.
    Reset(u32),
    /// GOAWAY with this error code.
    GoAway(u32),
    /// The connection closed.
    Closed,
}

pub struct RawH2 {
    stream: TcpStream,
    buf: Vec<u8>,
    decoder: loona_hpack::Decoder<'static>,
}

/// One frame read from the server.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl RawH2 {
    /// Connects (prior knowledge) and sends the preface and an empty SETTINGS frame.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut h2 = Self {
            stream,
            buf: Vec::new(),
            decoder: loona_hpack::Decoder::new(),
        };
        h2.write(PREFACE).await;
        h2.frame(SETTINGS, 0, 0, &[]).await;
        h2
    }

    /// The socket, for writing frames in bulk.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Writes one frame.
    pub async fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut f = Vec::with_capacity(9 + payload.len());
        let len = payload.len() as u32;
        f.extend_from_slice(&len.to_be_bytes()[1..]);
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        f.extend_from_slice(payload);
        self.write(&f).await;
    }

    /// A HEADERS frame (END_HEADERS, and END_STREAM when `end`) with these fields, in
    /// this order, as HPACK literals without indexing.
    pub async fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end: bool) {
        let block = literal_block(fields);
        let flags = END_HEADERS | if end { END_STREAM } else { 0 };
        self.frame(HEADERS, flags, stream, &block).await;
    }

    pub async fn data(&mut self, stream: u32, bytes: &[u8], end: bool) {
        self.frame(DATA, if end { END_STREAM } else { 0 }, stream, bytes)
            .await;
    }

    /// The next frame from the server (None when the connection closed or nothing came in
    /// 10 s). SETTINGS and PINGs are acknowledged on the way.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let kind = self.buf[3];
                    let flags = self.buf[4];
                    let stream =
                        u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]])
                            & 0x7fff_ffff;
                    let payload = self.buf[9..9 + len].to_vec();
                    self.buf.drain(..9 + len);
                    if kind == SETTINGS && flags & ACK == 0 {
                        self.frame(SETTINGS, ACK, 0, &[]).await;
                    }
                    if kind == PING && flags & ACK == 0 {
                        self.frame(PING, ACK, 0, &payload).await;
                    }
                    return Some(Frame {
                        kind,
                        flags,
                        stream,
                        payload,
                    });
                }
            }
            let mut chunk = [0u8; 16384];
            let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk));
            match read.await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// Reads frames until `stream` ends: its response (status and body), a reset, a
    /// GOAWAY, or the connection closing.
    pub async fn outcome(&mut self, stream: u32) -> Outcome {
        let mut status = None;
        let mut body = Vec::new();
        loop {
            let Some(frame) = self.next_frame().await else {
                return match status {
                    Some(status) => Outcome::Response { status, body },
                    None => Outcome::Closed,
                };
            };
            match frame.kind {
                GOAWAY if status.is_none() => {
                    let code = frame
                        .payload
                        .get(4..8)
                        .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                    // A graceful GOAWAY (NO_ERROR) lets open streams finish.
                    if code != 0 {
                        return Outcome::GoAway(code);
                    }
                }
                RST_STREAM if frame.stream == stream => {
                    // After a response, a reset only says the request body was not read.
                    if let Some(status) = status {
                        return Outcome::Response { status, body };
                    }
                    let c = &frame.payload;
                    return Outcome::Reset(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                }
                HEADERS if frame.stream == stream => {
                    let fields = self.decoder.decode(&frame.payload).unwrap_or_default();
                    if let Some((_, v)) = fields.iter().find(|(n, _)| n == b":status") {
                        status = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
                    }
                    if frame.flags & END_STREAM != 0 {
                        return Outcome::Response {
                            status: status.unwrap_or(0),
                            body,
                        };
                    }
                }
                DATA if frame.stream == stream => {
                    body.extend_from_slice(&frame.payload);
                    if frame.flags & END_STREAM != 0 {
                        return Outcome::Response {
                            status: status.unwrap_or(0),
                            body,
                        };
                    }
                }
                _ => {}
            }
        }
    }
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), first byte ORed with `high`.
fn integer(out: &mut Vec<u8>, high: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block of literal fields without indexing, new names, no Huffman coding.
pub fn literal_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        integer(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        integer(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}
