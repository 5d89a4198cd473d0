// The minimal proxy: hyper's HTTP/1.1 server, hyper's HTTP/1.1 client over pooled
// connections (each connection's dispatcher in its own task, as hyper runs it).
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Pool = Arc<Mutex<Vec<SendRequest<Incoming>>>>;

async fn proxy(pool: Pool, mut req: Request<Incoming>) -> Result<Response<Incoming>, Infallible> {
    let pq = req.uri().path_and_query().cloned().unwrap();
    *req.uri_mut() = pq.into();
    let sender = pool.lock().unwrap().pop();
    let mut sender = match sender {
        Some(s) => s,
        None => {
            let s = TcpStream::connect("127.0.0.1:19100").await.unwrap();
            s.set_nodelay(true).unwrap();
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                .await
                .unwrap();
            tokio::spawn(conn);
            sender
        }
    };
    sender.ready().await.unwrap();
    let resp = sender.send_request(req).await.unwrap();
    pool.lock().unwrap().push(sender);
    Ok(resp)
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
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(s), service_fn(move |r| proxy(pool.clone(), r)))
                        .await;
                });
            }
        }
    }
}
