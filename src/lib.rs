//! wicket: a Kubernetes Ingress controller and HTTP reverse proxy.
pub mod model;
