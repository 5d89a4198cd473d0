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
//! * [`admin`] — what operators see: the admin listener (`/healthz`, `/readyz`, `/metrics`,
//!   `/debug/routes`, `/debug/explain`), the routing report, explain, the metrics registry,
//!   and the clients behind `wicket routes|explain|check`.
//! * [`app`] — wiring and shutdown; [`cli`], [`telemetry`], [`demo`], [`echo`],
//!   [`migrate`] (what a switch from ingress-nginx does to each Ingress); [`memory`] gives
//!   what a rebuild freed back to the system.

pub mod admin;
pub mod app;
pub mod cli;
pub mod controller;
pub mod demo;
pub mod echo;
pub mod memory;
pub mod migrate;
pub mod model;
pub mod proxy;
pub mod telemetry;
