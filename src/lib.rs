//! wicket: a Kubernetes Ingress controller and HTTP reverse proxy.
pub mod controller;
pub mod model;
