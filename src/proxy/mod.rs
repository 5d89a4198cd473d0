//! The data plane, one file per step in request order: `listen` accepts (and `conn` keeps
//! every client connection's state: timeouts, room for new clients, drain), `tls`
//! terminates, `serve` runs HTTP/1.1 and HTTP/2, `handler` takes each request through
//! `trust` (who the client is), `limits` (head and body), `route` (host and path; `gateway` for Gateway API rules' filters),
//! `affinity` and `balance` (endpoint choice, with `outlier` ejection), `headers` and `forward` (to the
//! pod, through `pool`), and `error` turns any failure into its response. It reads the
//! current snapshot and nothing else of the control plane.

pub mod affinity;
pub mod auth;
pub mod balance;
pub mod body;
pub mod conn;
pub mod cors;
pub mod error;
pub mod error_page;
pub mod external_auth;
pub mod forward;
pub mod gateway;
pub mod handler;
pub mod headers;
pub mod limits;
pub mod listen;
pub mod observe;
pub mod outlier;
pub mod passthrough;
pub mod pool;
pub mod proxy_protocol;
pub mod redirect;
pub mod route;
pub mod serve;
pub mod tls;
pub mod trust;
pub mod tunnel;

pub use balance::Balancer;
pub use body::ProxyBody;
pub use conn::ConnInfo;
pub use error::ProxyError;
pub use forward::UpstreamSettings;
pub use handler::{Hsts, Proxy, ProxySettings};
