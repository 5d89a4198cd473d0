//! The data plane, one file per step in request order: `listen` accepts, `serve` runs
//! HTTP/1.1 and HTTP/2, `handler` takes each request through `route` (host and path),
//! `balance` (endpoint choice), `headers` and `forward` (to the pod), and `error` turns any
//! failure into its response. It reads the current snapshot and nothing else of the
//! control plane.

pub mod balance;
pub mod body;
pub mod error;
pub mod forward;
pub mod handler;
pub mod headers;
pub mod listen;
pub mod observe;
pub mod pool;
pub mod route;
pub mod serve;
pub mod tls;

pub use balance::Balancer;
pub use body::ProxyBody;
pub use error::ProxyError;
pub use forward::UpstreamSettings;
pub use handler::{ConnInfo, Hsts, Proxy, ProxySettings};
