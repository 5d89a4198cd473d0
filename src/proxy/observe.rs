//! Every outcome, good or bad, is one metric observation and one access-log line, taken
//! when the response body has been sent (or the client went away): only then are the
//! response size and the full duration known.
//!
//! Access-log lines go to stdout through a writer thread that batches them (a write per
//! burst, not per request) and flushes whenever the queue runs dry, so a quiet proxy's
//! lines appear at once and a busy one does not pay a syscall per request.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::uri::Authority;
use http::{HeaderValue, Method, StatusCode, Uri, Version};
use serde::Serialize;

use crate::admin::metrics::{Metrics, RouteLabels};

/// `--access-log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogFormat {
    /// One JSON object per line.
    Json,
    /// One human-readable line, nginx style.
    Text,
    /// No access log.
    Off,
}

/// Where the observations go.
pub struct Observer {
    metrics: Arc<Metrics>,
    log: Option<AccessLog>,
}

impl Observer {
    pub fn new(metrics: Arc<Metrics>, log: Option<AccessLog>) -> Self {
        Self { metrics, log }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether lines are written (else the request text is not even kept).
    pub fn logs(&self) -> bool {
        self.log.is_some()
    }

    fn record(&self, record: &Record, bytes_out: u64) {
        let now = Instant::now();
        let took = now.saturating_duration_since(record.started);
        self.metrics
            .request(&record.route, &record.method, record.status, took);
        if let Some(addr) = record.endpoint {
            self.metrics
                .traffic()
                .answered(addr, record.status, took, now);
        }
        if let (Some(log), Some(request)) = (&self.log, &record.request) {
            log.write(record, request, bytes_out, took);
        }
    }
}

/// What the handler learnt about one request.
#[derive(Debug)]
pub struct Record {
    pub started: Instant,
    pub method: Method,
    pub status: StatusCode,
    pub route: RouteLabels,
    /// The pod address that answered (the last one tried), if any.
    pub endpoint: Option<std::net::SocketAddr>,
    /// The rest of the request, kept only when there is an access log.
    pub request: Option<Box<Request>>,
    /// Counted against `limit-connections` until the response is done (dropped with this).
    pub in_flight: Option<crate::model::InFlight>,
}

/// Who sent a request: the connection's peer (with its port), or the address a trusted
/// proxy forwarded for (no port known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl Client {
    pub fn peer(peer: SocketAddr) -> Self {
        Self {
            ip: peer.ip(),
            port: Some(peer.port()),
        }
    }

    /// `ip`, as a trusted proxy at `peer` says; the peer's port if the proxy is the client.
    pub fn forwarded(ip: IpAddr, peer: SocketAddr) -> Self {
        if ip == peer.ip() {
            Self::peer(peer)
        } else {
            Self { ip, port: None }
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => SocketAddr::new(self.ip, port).fmt(f),
            None => self.ip.fmt(f),
        }
    }
}

impl Serialize for Client {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The access log's view of a request.
#[derive(Debug)]
pub struct Request {
    pub client: Client,
    /// The Host header (or `:authority`) as the client sent it.
    pub host: Option<HeaderValue>,
    pub uri: Uri,
    pub version: Version,
    /// The request body size the client declared (Content-Length), if any.
    pub bytes_in: Option<u64>,
    /// The pod (or ExternalName host) that answered.
    pub upstream: Option<Authority>,
    pub request_id: Option<HeaderValue>,
}

/// Runs once, when the response body ends or is dropped.
#[derive(Debug)]
pub struct Finish {
    observer: Arc<Observer>,
    record: Record,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("access_log", &self.log.is_some())
            .finish_non_exhaustive()
    }
}

impl Finish {
    pub fn new(observer: Arc<Observer>, record: Record) -> Self {
        Self { observer, record }
    }

    pub fn run(self, bytes_out: u64) {
        self.observer.record(&self.record, bytes_out);
    }
}

/// The access-log writer.
pub struct AccessLog {
    format: AccessLogFormat,
    lines: mpsc::Sender<Vec<u8>>,
}

impl AccessLog {
    /// Lines to stdout; `None` for `--access-log off`.
    pub fn stdout(format: AccessLogFormat) -> Option<Self> {
        Self::to(format, Box::new(std::io::stdout()))
    }

    /// Lines to `out` (tests), written by a thread of their own.
    pub fn to(format: AccessLogFormat, mut out: Box<dyn Write + Send>) -> Option<Self> {
        if format == AccessLogFormat::Off {
            return None;
        }
        let (lines, rx) = mpsc::channel::<Vec<u8>>();
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut buf = std::io::BufWriter::with_capacity(64 * 1024, &mut out);
                while let Ok(line) = rx.recv() {
                    let _ = buf.write_all(&line);
                    while let Ok(line) = rx.try_recv() {
                        let _ = buf.write_all(&line);
                    }
                    let _ = buf.flush();
                }
                let _ = buf.flush();
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the access-log thread; no access log");
            return None;
        }
        Some(Self { format, lines })
    }

    fn write(&self, record: &Record, r: &Request, bytes_out: u64, took: Duration) {
        let time = SystemTime::now()
            .checked_sub(took)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let time = humantime::format_rfc3339_millis(time).to_string();
        let host = r.host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
        let path = r.uri.path_and_query().map_or("/", |p| p.as_str());
        let upstream = r.upstream.as_ref().map(Authority::as_str);
        let upstream_status = r.upstream.as_ref().map(|_| record.status.as_u16());
        let request_id = r.request_id.as_ref().and_then(|v| v.to_str().ok());
        let protocol = version_str(r.version);
        let duration_ms = took.as_secs_f64() * 1000.0;
        let mut line = Vec::with_capacity(384);
        match self.format {
            AccessLogFormat::Json => {
                let entry = Entry {
                    time: &time,
                    client: r.client,
                    method: record.method.as_str(),
                    host,
                    path,
                    protocol,
                    status: record.status.as_u16(),
                    bytes_in: r.bytes_in,
                    bytes_out,
                    duration_ms,
                    upstream,
                    upstream_status,
                    namespace: record.route.namespace(),
                    ingress: record.route.ingress(),
                    service: record.route.service(),
                    request_id,
                };
                if serde_json::to_writer(&mut line, &entry).is_err() {
                    return;
                }
                line.push(b'\n');
            }
            AccessLogFormat::Text => {
                let _ = writeln!(
                    line,
                    "{} - [{time}] \"{} {} {protocol}\" {} in={} out={bytes_out} {duration_ms:.3}ms host=\"{}\" upstream={} upstream_status={} route={}/{}/{} id={}",
                    r.client.ip,
                    record.method,
                    escape(path),
                    record.status.as_u16(),
                    r.bytes_in.map_or("-".to_owned(), |b| b.to_string()),
                    escape(host),
                    upstream.unwrap_or("-"),
                    upstream_status.map_or("-".to_owned(), |s| s.to_string()),
                    dash(record.route.namespace()),
                    dash(record.route.ingress()),
                    dash(record.route.service()),
                    request_id.unwrap_or("-"),
                );
            }
            AccessLogFormat::Off => return,
        }
        let _ = self.lines.send(line);
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    time: &'a str,
    client: Client,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    protocol: &'a str,
    status: u16,
    bytes_in: Option<u64>,
    bytes_out: u64,
    duration_ms: f64,
    upstream: Option<&'a str>,
    upstream_status: Option<u16>,
    namespace: &'a str,
    ingress: &'a str,
    service: &'a str,
    request_id: Option<&'a str>,
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// Request text in a text line: no quotes, spaces or control characters that could forge
/// a field or a line.
fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_ascii_graphic() && c != '"' && c != '\\' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn record(path: &str) -> Record {
        Record {
            in_flight: None,
            started: Instant::now(),
            method: Method::GET,
            status: StatusCode::OK,
            route: RouteLabels::default(),
            endpoint: None,
            request: Some(Box::new(Request {
                client: Client::peer("10.0.0.9:40000".parse().unwrap()),
                host: Some(HeaderValue::from_static("a.test")),
                uri: path.parse().unwrap(),
                version: Version::HTTP_11,
                bytes_in: None,
                upstream: Some(Authority::from_static("10.1.2.3:8080")),
                request_id: Some(HeaderValue::from_static("abc")),
            })),
        }
    }

    fn lines(format: AccessLogFormat, records: &[Record]) -> String {
        let out = Shared::default();
        let log = AccessLog::to(format, Box::new(out.clone())).unwrap();
        for r in records {
            log.write(
                r,
                r.request.as_ref().unwrap(),
                42,
                Duration::from_micros(1500),
            );
        }
        drop(log);
        // The writer thread ends when the channel closes; wait for its output.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            if text.lines().count() == records.len() || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn json_lines_carry_every_field() {
        let text = lines(AccessLogFormat::Json, &[record("/x?y=1")]);
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["client"], "10.0.0.9:40000");
        assert_eq!(v["path"], "/x?y=1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytesOut"], 42);
        assert_eq!(v["durationMs"], 1.5);
        assert_eq!(v["upstream"], "10.1.2.3:8080");
        assert_eq!(v["upstreamStatus"], 200);
        assert_eq!(v["requestId"], "abc");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn text_lines_cannot_be_forged_by_the_request() {
        let mut r = record("/a");
        r.request.as_mut().unwrap().host = Some(HeaderValue::from_static("evil\" status=200 x=\""));
        let text = lines(AccessLogFormat::Text, &[r]);
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains(r#"host="evil\" status=200 x=\"""#), "{text}");
        assert!(text.starts_with("10.0.0.9 - ["), "{text}");
        assert!(
            text.contains("\"GET /a HTTP/1.1\" 200 in=- out=42 1.500ms"),
            "{text}"
        );
    }
}
