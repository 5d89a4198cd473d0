// The minimal proxy with an in-task HTTP/1.1 client instead of hyper's: a prototype to
// measure what leaving hyper's client would save (bodiless requests, Content-Length
// responses only).
use bytes::{Bytes, BytesMut};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Conn {
    io: TcpStream,
    buf: BytesMut,
}
type Pool = Arc<Mutex<Vec<Conn>>>;

async fn proxy(pool: Pool, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let conn = pool.lock().unwrap().pop();
    let mut conn = match conn {
        Some(c) => c,
        None => {
            let s = TcpStream::connect("127.0.0.1:19100").await.unwrap();
            s.set_nodelay(true).unwrap();
            Conn {
                io: s,
                buf: BytesMut::with_capacity(8192),
            }
        }
    };
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(req.method().as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        req.uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    conn.io.write_all(&head).await.unwrap();
    loop {
        if conn.buf.capacity() - conn.buf.len() < 1024 {
            conn.buf.reserve(4096);
        }
        let n = conn.io.read_buf(&mut conn.buf).await.unwrap();
        assert!(n > 0);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = parsed.parse(&conn.buf).unwrap() else {
            continue;
        };
        let mut builder = Response::builder().status(parsed.code.unwrap());
        let mut body_len = 0usize;
        let map = builder.headers_mut().unwrap();
        map.reserve(parsed.headers.len());
        let mut spans = Vec::with_capacity(parsed.headers.len());
        for h in parsed.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                body_len = std::str::from_utf8(h.value).unwrap().parse().unwrap();
            }
            if h.name.eq_ignore_ascii_case("connection") {
                continue;
            }
            let start = h.value.as_ptr() as usize - conn.buf.as_ptr() as usize;
            spans.push((
                http::HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
                start,
                h.value.len(),
            ));
        }
        if conn.buf.len() < len + body_len {
            continue;
        }
        let all = conn.buf.split_to(len + body_len).freeze();
        for (name, start, l) in spans {
            map.append(
                name,
                http::HeaderValue::from_maybe_shared(all.slice(start..start + l)).unwrap(),
            );
        }
        let body = all.slice(len..);
        pool.lock().unwrap().push(conn);
        return Ok(builder.body(Full::new(body)).unwrap());
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let pool: Pool = Arc::default();
    let admin = TcpListener::bind("127.0.0.1:18354").await.unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = admin.accept().await.unwrap();
            tokio::spawn(http1::Builder::new().serve_connection(
                TokioIo::new(s),
                service_fn(|_r: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(String::from("ok")))
                }),
            ));
        }
    });
    let l = TcpListener::bind("127.0.0.1:18180").await.unwrap();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            a = l.accept() => {
                let (s, _) = a.unwrap();
                s.set_nodelay(true).unwrap();
                let pool = pool.clone();
                tokio::spawn(async move {
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(s), service_fn(move |r| proxy(pool.clone(), r))).await;
                });
            }
        }
    }
}
