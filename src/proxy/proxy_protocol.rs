//! The PROXY protocol (HAProxy's, versions 1 and 2), for cloud load balancers that pass
//! the client's address no other way (AWS NLB, Azure, DigitalOcean, ...).
//!
//! With `--proxy-protocol` every connection to the HTTP and HTTPS listeners must start with
//! a PROXY header; its source address becomes the connection's client (and its destination
//! port the `X-Forwarded-Port`). A connection that sends something else is closed, counted
//! and reported; one that sends nothing is closed by the client-header timeout like any
//! silent connection. A `LOCAL` (v2) or `UNKNOWN` (v1) header — the load balancer's own
//! health checks — keeps the TCP addresses. Parsing is the `ppp` crate's.
//!
//! Bytes read past the header (a client's first request, sent in the same segment) are
//! replayed by [`ClientIo`] before the socket is read again.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use ppp::v1;
use ppp::v2;
use ppp::{HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::conn::ClientIo;

/// The largest PROXY header accepted: a v2 header with the TLVs load balancers add (AWS's
/// VPC endpoint id, TLS details) fits easily; anything larger is not a load balancer.
const MAX_HEADER: usize = 4096;

/// What a PROXY header said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proxied {
    /// The client's address and the address it connected to.
    Addresses {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// A health check by the load balancer itself: the TCP addresses stand.
    Local,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyProtocolError {
    #[error("the connection does not start with a PROXY protocol header ({0})")]
    Missing(String),
    #[error("the PROXY protocol header is larger than {MAX_HEADER} bytes")]
    TooLong,
    #[error("the connection closed before a complete PROXY protocol header")]
    Closed,
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

/// Reads the PROXY header at the start of `stream`. Returns what it says and the stream,
/// with any bytes read past the header put back in front.
pub async fn read_header(mut stream: TcpStream) -> Result<(Proxied, ClientIo), ProxyProtocolError> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        if buf.len() >= MAX_HEADER {
            return Err(ProxyProtocolError::TooLong);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(ProxyProtocolError::Closed);
        }
        let Some((proxied, length)) = parse(&buf)? else {
            continue;
        };
        let rest = buf.split_off(length).freeze();
        return Ok((proxied, ClientIo::with_prefix(stream, rest)));
    }
}

/// Parses a header from the bytes read so far: `None` while it is incomplete; the header
/// and its length once complete.
fn parse(input: &[u8]) -> Result<Option<(Proxied, usize)>, ProxyProtocolError> {
    let result = HeaderResult::parse(input);
    if result.is_incomplete() {
        return Ok(None);
    }
    match result {
        HeaderResult::V1(Ok(header)) => {
            let proxied = match header.addresses {
                v1::Addresses::Tcp4(a) => Proxied::Addresses {
                    source: SocketAddr::from((a.source_address, a.source_port)),
                    destination: SocketAddr::from((a.destination_address, a.destination_port)),
                },
                v1::Addresses::Tcp6(a) => Proxied::Addresses {
                    source: SocketAddr::from((a.source_address, a.source_port)),
                    destination: SocketAddr::from((a.destination_address, a.destination_port)),
                },
                v1::Addresses::Unknown => Proxied::Local,
            };
            Ok(Some((proxied, header.header.len())))
        }
        HeaderResult::V2(Ok(header)) => {
            let proxied = match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Proxied::Addresses {
                    source: SocketAddr::from((a.source_address, a.source_port)),
                    destination: SocketAddr::from((a.destination_address, a.destination_port)),
                },
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Proxied::Addresses {
                    source: SocketAddr::from((a.source_address, a.source_port)),
                    destination: SocketAddr::from((a.destination_address, a.destination_port)),
                },
                // LOCAL, or addresses that are not TCP over IP: keep the connection's own.
                _ => Proxied::Local,
            };
            Ok(Some((proxied, header.len())))
        }
        HeaderResult::V1(Err(error)) => Err(ProxyProtocolError::Missing(error.to_string())),
        HeaderResult::V2(Err(error)) => Err(ProxyProtocolError::Missing(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_header(command: u8, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(0x20 | command);
        h.push(0x11); // TCP over IPv4
        h.extend_from_slice(&12u16.to_be_bytes());
        let (SocketAddr::V4(s), SocketAddr::V4(d)) = (source, destination) else {
            panic!("IPv4 only")
        };
        h.extend_from_slice(&s.ip().octets());
        h.extend_from_slice(&d.ip().octets());
        h.extend_from_slice(&s.port().to_be_bytes());
        h.extend_from_slice(&d.port().to_be_bytes());
        h
    }

    #[test]
    fn a_v1_header_gives_the_client_and_its_length() {
        let input = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        let (proxied, len) = parse(input).unwrap().unwrap();
        assert_eq!(
            proxied,
            Proxied::Addresses {
                source: "203.0.113.7:51234".parse().unwrap(),
                destination: "10.0.0.1:443".parse().unwrap(),
            }
        );
        assert_eq!(&input[len..], b"GET / HTTP/1.1\r\n");
        let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n";
        assert!(matches!(
            parse(v6).unwrap(),
            Some((Proxied::Addresses { .. }, 44))
        ));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap(),
            Some((Proxied::Local, 15))
        );
    }

    #[test]
    fn a_v2_header_gives_the_client_and_local_keeps_the_connection() {
        let src: SocketAddr = "198.51.100.9:40000".parse().unwrap();
        let dst: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let mut input = v2_header(1, src, dst);
        let header_len = input.len();
        input.extend_from_slice(b"GET /");
        assert_eq!(
            parse(&input).unwrap(),
            Some((
                Proxied::Addresses {
                    source: src,
                    destination: dst
                },
                header_len
            ))
        );
        let local = v2_header(0, src, dst);
        assert_eq!(parse(&local).unwrap(), Some((Proxied::Local, header_len)));
    }

    #[test]
    fn partial_headers_wait_and_anything_else_is_refused() {
        assert_eq!(parse(b"PROX").unwrap(), None);
        assert_eq!(parse(b"PROXY TCP4 203.0.113.7 10.0.").unwrap(), None);
        assert_eq!(parse(b"\r\n\r\n\0\r\nQU").unwrap(), None);
        for garbage in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n",
        ] {
            assert!(
                matches!(parse(garbage), Err(ProxyProtocolError::Missing(_))),
                "{garbage:?}"
            );
        }
    }

    #[tokio::test]
    async fn bytes_after_the_header_are_read_first() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\nGET / HTTP/1.1\r\n\r\n")
                .await
                .unwrap();
            s
        });
        let (stream, _) = listener.accept().await.unwrap();
        let _client = client.await.unwrap();
        let (proxied, mut io) = read_header(stream).await.unwrap();
        assert!(matches!(proxied, Proxied::Addresses { .. }));
        let mut rest = vec![0u8; 18];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"GET / HTTP/1.1\r\n\r\n");
    }
}
