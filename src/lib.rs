//! wicket: a Kubernetes Ingress controller and HTTP reverse proxy in one process.
//!
//! ```text
//!  API server ─┐
//!  manifests  ─┴─> index ──> translate (pure) ──> publish ──> ArcSwap<Snapshot>
//!                 apply/delete/reset   Snapshot + Problems          │
//!                                                                ▼
//!  client ─> listen ─> serve (h1/h2) ─> handler ─> route ─> balance ─> forward ─> pod
//! ```
//!
//! * [`controller`] — the control plane: Kubernetes objects in, one immutable snapshot out.
//! * [`model`] — the snapshot: hosts, paths, backends, endpoints, problems; no Kubernetes types.
//! * [`proxy`] — the data plane: reads the current snapshot, forwards to pod addresses.
//! * [`admin`] — `/healthz`, `/readyz`, `/metrics`, `/debug/routes`; [`report`] renders the
//!   table; [`metrics`] holds the Prometheus families.
//! * [`app`] — wiring and shutdown; [`cli`], [`telemetry`], [`demo`], [`check`], [`echo`],
//!   [`migrate`] (what a switch from ingress-nginx does to each Ingress); [`memory`] gives
//!   what a rebuild freed back to the system.

pub mod admin;
pub mod app;
pub mod check;
pub mod cli;
pub mod controller;
pub mod demo;
pub mod echo;
pub mod explain;
pub mod inspect;
pub mod memory;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod proxy;
pub mod report;
pub mod telemetry;
