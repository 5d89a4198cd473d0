//! A pod that records the exact bytes of every request it receives, and answers the way a
//! test asks: fine, with an error status, by resetting, by stalling, or by not reading.
//!
//! It reads HTTP/1.1 itself (head to the blank line, then a Content-Length or chunked body)
//! rather than through hyper, so what it records is what came over the wire, and a request
//! cut short shows as incomplete.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the pod does with each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// `200 OK`, body `ok`, keep-alive.
    Ok,
    /// `200 OK` after this many milliseconds.
    Slow(u64),
    /// `200 OK` with a body of this many bytes.
    Large(usize),
    /// This status, body `err`, keep-alive.
    Status(u16),
    /// Reads the request, then closes the connection without a byte (a crash, a reset).
    Reset,
    /// Sends a response head promising 100 bytes and 5 of them, then closes.
    CutBody,
    /// Sends a response head promising 100 bytes and 5 of them, then nothing for ever.
    StallBody,
    /// Reads the request head, then never reads the body nor answers.
    NoRead,
    /// Answers `101 Switching Protocols` with `Upgrade: h2c`, then echoes raw bytes.
    SwitchToH2c,
}

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    /// The request head, CRLFs included.
    pub head: String,
    pub body: Vec<u8>,
    /// Whether the message was complete (its whole body arrived).
    pub complete: bool,
}

impl Received {
    /// The request line.
    pub fn line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    /// Every value of a header (lowercase name), in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.header_values(name).into_iter().next()
    }
}

pub struct RecordingPod {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
    connections: Arc<Mutex<usize>>,
    behaviour: Arc<Mutex<Behaviour>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingPod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingPod {
    /// A pod on its own 127.x.y.z address.
    pub async fn start(behaviour: Behaviour) -> Self {
        let ip = format!("127.{}.{}.5", fastrand::u8(1..=250), fastrand::u8(1..=250));
        Self::start_at(&format!("{ip}:0"), behaviour).await
    }

    /// A pod at `addr` (port 0: any).
    pub async fn start_at(addr: &str, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let task = {
            let log = log.clone();
            let connections = connections.clone();
            let behaviour = behaviour.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    *connections.lock().unwrap() += 1;
                    let log = log.clone();
                    let behaviour = behaviour.clone();
                    tokio::spawn(serve(stream, log, behaviour));
                }
            })
        };
        Self {
            addr,
            log,
            connections,
            behaviour,
            task,
        }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    /// Every request received so far, complete or not.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Complete requests received so far.
    pub fn complete(&self) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.complete).collect()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

async fn serve(
    mut stream: TcpStream,
    log: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(head_end) = read_until(&mut stream, &mut buf, b"\r\n\r\n").await else {
            if !buf.is_empty() {
                log.lock().unwrap().push(Received {
                    head: String::from_utf8_lossy(&buf).into_owned(),
                    body: Vec::new(),
                    complete: false,
                });
            }
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let behaviour = *behaviour.lock().unwrap();
        if behaviour == Behaviour::NoRead {
            log.lock().unwrap().push(Received {
                head,
                body: Vec::new(),
                complete: false,
            });
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        let request = Received {
            head: head.clone(),
            body: Vec::new(),
            complete: false,
        };
        let (body, complete) = read_body(&mut stream, &mut buf, &request).await;
        log.lock().unwrap().push(Received {
            head,
            body,
            complete,
        });
        if !complete {
            return;
        }
        const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-pod: recorder\r\n\r\nok";
        let reply: &[u8] = match behaviour {
            Behaviour::Ok => OK,
            Behaviour::Slow(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                OK
            }
            Behaviour::Large(size) => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'L'; 64 * 1024];
                let mut left = size;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if stream.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                continue;
            }
            Behaviour::Status(status) => {
                let text = format!(
                    "HTTP/1.1 {status} Oops\r\ncontent-length: 3\r\nx-pod: recorder\r\n\r\nerr"
                );
                if stream.write_all(text.as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
            Behaviour::Reset => return,
            Behaviour::CutBody => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
                    .await;
                return;
            }
            Behaviour::StallBody => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
                    .await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Behaviour::SwitchToH2c => {
                let _ = stream
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n")
                    .await;
                // Whatever comes through the tunnel is recorded as a "request".
                let mut rest = buf.clone();
                let mut chunk = [0u8; 4096];
                while let Ok(n) =
                    tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk)).await
                {
                    match n {
                        Ok(0) | Err(_) => break,
                        Ok(n) => rest.extend_from_slice(&chunk[..n]),
                    }
                }
                if !rest.is_empty() {
                    log.lock().unwrap().push(Received {
                        head: String::from_utf8_lossy(&rest).into_owned(),
                        body: Vec::new(),
                        complete: true,
                    });
                }
                return;
            }
            Behaviour::NoRead => unreachable!(),
        };
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Reads until `buf` holds `delimiter`; returns the index just past it (None on EOF).
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, delimiter: &[u8]) -> Option<usize> {
    loop {
        if let Some(i) = find(buf, delimiter) {
            return Some(i + delimiter.len());
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn read_exact_into(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> bool {
    while buf.len() < n {
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    true
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads the body the head announces; returns it (de-chunked) and whether it was complete.
async fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: &Received,
) -> (Vec<u8>, bool) {
    if request
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        let mut body = Vec::new();
        loop {
            let Some(line_end) = read_until(stream, buf, b"\r\n").await else {
                body.extend_from_slice(buf);
                return (body, false);
            };
            let line = String::from_utf8_lossy(&buf[..line_end - 2]).into_owned();
            buf.drain(..line_end);
            let size_text = line.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size_text, 16) else {
                return (body, false);
            };
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    let Some(end) = read_until(stream, buf, b"\r\n").await else {
                        return (body, false);
                    };
                    let blank = end == 2;
                    buf.drain(..end);
                    if blank {
                        return (body, true);
                    }
                }
            }
            if !read_exact_into(stream, buf, size + 2).await {
                body.extend_from_slice(buf);
                return (body, false);
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
    }
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let complete = read_exact_into(stream, buf, length).await;
    let take = length.min(buf.len());
    let body: Vec<u8> = buf.drain(..take).collect();
    (body, complete)
}
