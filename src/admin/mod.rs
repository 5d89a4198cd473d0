//! Everything wicket shows its operators, in one place.
//!
//! - this file: the admin listener (`/healthz`, `/readyz`, `/metrics`, `/debug/routes`,
//!   `/debug/explain`) and its small HTML pages. It is a separate listener (127.0.0.1:10254
//!   by default) because it tells anyone who can reach it how the cluster is wired; it
//!   never shares a port with proxied traffic.
//! - [`report`]: the routing table for people (`/debug/routes`, `wicket check`).
//! - [`explain`]: why one request goes where it goes (`/debug/explain`, `wicket explain`).
//! - [`metrics`]: the Prometheus registry behind `/metrics`, fed by the proxy.
//! - [`inspect`]: the client behind `wicket routes` and `wicket explain`, which ask a
//!   running wicket's admin listener.
//! - [`check`]: `wicket check DIR`, the routing table of a manifests directory without
//!   serving it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};

pub mod check;
pub mod dashboard;
pub mod explain;
pub mod explain_gateway;
pub mod inspect;
pub mod metrics;
pub mod report;
pub mod traffic;

use crate::controller::publish::SharedSnapshot;
use crate::proxy::outlier::Outliers;
use crate::proxy::tls::TlsStats;
use crate::proxy::ProxyBody;
use metrics::Metrics;

/// Liveness and readiness shared by the admin endpoints and the shutdown sequence.
#[derive(Debug, Default)]
pub struct Health {
    shutting_down: AtomicBool,
}

impl Health {
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
pub struct Admin {
    snapshot: SharedSnapshot,
    health: Arc<Health>,
    tls: Option<TlsStats>,
    metrics: Option<Arc<Metrics>>,
    outliers: Option<Arc<Outliers>>,
    info: Arc<dashboard::RunInfo>,
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Admin {
    pub fn new(snapshot: SharedSnapshot, health: Arc<Health>) -> Self {
        Self {
            snapshot,
            health,
            tls: None,
            metrics: None,
            outliers: None,
            info: Arc::default(),
        }
    }

    /// What the dashboard says about this process (mode, listeners, leadership).
    pub fn with_info(mut self, info: dashboard::RunInfo) -> Self {
        self.info = Arc::new(info);
        self
    }

    /// The dashboard: built and rendered on the blocking pool, never on a proxy worker.
    async fn dashboard<B>(&self, req: &Request<B>) -> Response<ProxyBody> {
        let query = Query::parse(req);
        let format = query.format(req);
        let fragment = query.get("fragment").is_some();
        let filter = query.get("q").map(str::to_owned);
        let snapshot = self.snapshot.load_full();
        let outliers = self.outliers.clone();
        let metrics = self.metrics.clone();
        let info = self.info.clone();
        let served = self.tls.as_ref().map(|t| t.served.clone());
        let shutting_down = self.health.is_shutting_down();
        let rendered = tokio::task::spawn_blocking(move || {
            let sources = dashboard::Sources {
                snapshot: &snapshot,
                outliers: outliers.as_deref(),
                traffic: metrics.as_deref().map(Metrics::traffic),
                info: &info,
                shutting_down,
                served: served.as_deref(),
            };
            let view = dashboard::view(&sources, filter.as_deref());
            match format {
                // The script's refresh: the live part, whatever the Accept header says.
                _ if fragment => (
                    "text/html; charset=utf-8",
                    dashboard::live_html(&view).into_bytes(),
                ),
                Format::Html => (
                    "text/html; charset=utf-8",
                    dashboard::page(&view).into_bytes(),
                ),
                Format::Text => (
                    "text/plain; charset=utf-8",
                    dashboard::text(&view).into_bytes(),
                ),
                Format::Json => {
                    let mut body = serde_json::to_vec_pretty(&view).unwrap_or_default();
                    body.push(b'\n');
                    ("application/json", body)
                }
            }
        })
        .await;
        match rendered {
            Ok((content_type, body)) => respond(StatusCode::OK, content_type, body),
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500: the dashboard could not be rendered\n",
            ),
        }
    }

    /// Shows the endpoints these passive health checks took out of rotation.
    pub fn with_outliers(mut self, outliers: Arc<Outliers>) -> Self {
        self.outliers = Some(outliers);
        self
    }

    /// Reports these handshake counts in `/debug/routes`.
    pub fn with_tls(mut self, tls: TlsStats) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Serves these metrics on `/metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub async fn handle<B>(&self, req: Request<B>) -> Response<ProxyBody> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n");
        }
        match req.uri().path() {
            "/" => self.dashboard(&req).await,
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                if self.health.is_shutting_down() {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: shutting down\n",
                    )
                } else if !self.snapshot.load().is_ready() {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: no routing table published yet\n",
                    )
                } else {
                    text(StatusCode::OK, "ready\n")
                }
            }
            "/debug/routes" => {
                let snapshot = self.snapshot.load_full();
                let query = Query::parse(&req);
                let host = query.get("host");
                let outliers = self.outliers.as_deref();
                match query.format(&req) {
                    Format::Text => respond(
                        StatusCode::OK,
                        "text/plain; charset=utf-8",
                        report::to_text_for(&snapshot, host, outliers).into(),
                    ),
                    Format::Html => respond(
                        StatusCode::OK,
                        "text/html; charset=utf-8",
                        html::routes(&snapshot, &report::to_text_for(&snapshot, host, outliers))
                            .into(),
                    ),
                    Format::Json => {
                        let handshakes = self.tls.as_ref().map(|t| report::Handshakes {
                            completed: t.handshakes.get(),
                            failed: t.failures.get(),
                        });
                        respond(
                            StatusCode::OK,
                            "application/json",
                            report::to_json_for(&snapshot, handshakes, host, outliers),
                        )
                    }
                }
            }
            "/debug/explain" => {
                let query = Query::parse(&req);
                let Some(host) = query.get("host") else {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "400: say which request to explain: /debug/explain?host=shop.example.com&path=/cart\n",
                    );
                };
                let path = query.get("path").unwrap_or("/");
                // Gateway API rules match on the method and headers too.
                let method = query
                    .get("method")
                    .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
                    .unwrap_or(http::Method::GET);
                let mut headers = http::HeaderMap::new();
                if let Some((name, value)) = query.get("header").and_then(|h| h.split_once(':')) {
                    if let (Ok(name), Ok(value)) = (
                        http::HeaderName::from_bytes(name.trim().as_bytes()),
                        http::HeaderValue::from_str(value.trim()),
                    ) {
                        headers.insert(name, value);
                    }
                }
                let snapshot = self.snapshot.load_full();
                let explanation = explain::explain_request(
                    &snapshot,
                    host,
                    path,
                    &method,
                    &headers,
                    self.outliers.as_deref(),
                );
                match query.format(&req) {
                    Format::Text => respond(
                        StatusCode::OK,
                        "text/plain; charset=utf-8",
                        explain::to_text(&explanation).into(),
                    ),
                    Format::Html => respond(
                        StatusCode::OK,
                        "text/html; charset=utf-8",
                        html::explain(host, path, &explain::to_text(&explanation)).into(),
                    ),
                    Format::Json => {
                        let mut body = serde_json::to_vec_pretty(&explanation).unwrap_or_default();
                        body.push(b'\n');
                        respond(StatusCode::OK, "application/json", body)
                    }
                }
            }
            "/metrics" => match &self.metrics {
                Some(metrics) => respond(StatusCode::OK, OPENMETRICS, metrics.encode().into()),
                None => text(StatusCode::NOT_FOUND, "404 not found: no metrics here\n"),
            },
            _ => match Query::parse(&req).format(&req) {
                Format::Html => respond(
                    StatusCode::NOT_FOUND,
                    "text/html; charset=utf-8",
                    html::not_found().into_bytes(),
                ),
                _ => text(
                    StatusCode::NOT_FOUND,
                    "404 not found: try / (the dashboard), /healthz, /readyz, /metrics, /debug/routes or /debug/explain?host=H&path=P\n",
                ),
            },
        }
    }
}

/// The decoded query string of an admin request.
struct Query(Vec<(String, String)>);

enum Format {
    Json,
    Text,
    Html,
}

impl Query {
    fn parse<B>(req: &Request<B>) -> Self {
        let q = req.uri().query().unwrap_or("");
        Self(
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// `format=json|text|html`; without one, HTML for browsers and JSON for the rest.
    fn format<B>(&self, req: &Request<B>) -> Format {
        match self.get("format") {
            Some("text") => Format::Text,
            Some("html") => Format::Html,
            Some(_) => Format::Json,
            None => {
                let browser = req
                    .headers()
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("text/html"));
                if browser {
                    Format::Html
                } else {
                    Format::Json
                }
            }
        }
    }
}

/// Plain HTML pages for browsers: the text views, escaped, with links and a form.
mod html {
    use super::dashboard::escape;
    use crate::model::Snapshot;

    fn page(title: &str, body: &str) -> String {
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2em}}pre{{background:#f6f6f6;padding:1em;overflow-x:auto}}</style>\
             </head><body>\n{body}\n</body></html>\n",
            escape(title)
        )
    }

    fn form(host: &str, path: &str) -> String {
        format!(
            "<form action=\"/debug/explain\" method=\"get\"><input type=\"hidden\" name=\"format\" value=\"html\">\
             Explain a request: host <input name=\"host\" value=\"{}\"> path <input name=\"path\" value=\"{}\"> \
             <button>Explain</button></form>",
            escape(host),
            escape(path)
        )
    }

    pub fn not_found() -> String {
        page(
            "wicket: not found",
            "<h1>404: no such page</h1><p><a href=\"/\">Back to the dashboard</a></p>",
        )
    }

    pub fn routes(snapshot: &Snapshot, table: &str) -> String {
        let body = format!(
            "<h1>wicket routing table</h1><p>generation {} &middot; <a href=\"/\">dashboard</a> &middot; <a href=\"?format=json\">JSON</a> &middot; <a href=\"?format=text\">text</a> &middot; <a href=\"/metrics\">metrics</a></p>{}<pre>{}</pre>",
            snapshot.generation,
            form("", "/"),
            escape(table)
        );
        page("wicket routes", &body)
    }

    /// The explanation as a list of steps: one item per line of the text form, nested as
    /// the text is indented.
    pub fn explain(host: &str, path: &str, text: &str) -> String {
        let mut steps = String::from("<ol class=steps>");
        for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let depth = line.len() - line.trim_start().len();
            let _ = std::fmt::Write::write_fmt(
                &mut steps,
                format_args!(
                    "<li style=\"margin-left:{}em\">{}</li>",
                    depth / 2,
                    escape(line.trim())
                ),
            );
        }
        steps.push_str("</ol>");
        let body = format!(
            "<h1>Explain {} {}</h1><p><a href=\"/\">dashboard</a> &middot; <a href=\"/debug/routes?format=html\">routing table</a> &middot; <a href=\"?host={}&amp;path={}&amp;format=text\">text</a></p>{}{}",
            escape(host),
            escape(path),
            escape(&form_urlencoded::byte_serialize(host.as_bytes()).collect::<String>()),
            escape(&form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()),
            form(host, path),
            steps
        );
        page("wicket explain", &body)
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    respond(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::publish::Publisher;
    use crate::model::Snapshot;
    use http_body_util::BodyExt;

    async fn get(admin: &Admin, uri: &str) -> (StatusCode, String) {
        let response = admin.handle(Request::get(uri).body(()).unwrap()).await;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_the_first_publish_and_shutdown() {
        let publisher = Publisher::new();
        let health = Arc::new(Health::default());
        let admin = Admin::new(publisher.shared(), health.clone());
        assert_eq!(get(&admin, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(&admin, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        publisher.publish(Snapshot::empty());
        assert_eq!(get(&admin, "/readyz").await.0, StatusCode::OK);
        health.begin_shutdown();
        let (status, body) = get(&admin, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("shutting down"));
        assert_eq!(get(&admin, "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn debug_routes_is_json_by_default_and_text_on_request() {
        let publisher = Publisher::new();
        publisher.publish(Snapshot::empty());
        let admin = Admin::new(publisher.shared(), Arc::new(Health::default()));
        let (status, body) = get(&admin, "/debug/routes").await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["generation"], 1);
        assert!(json["publishedAt"].as_str().unwrap().ends_with('Z'));
        let (_, body) = get(&admin, "/debug/routes?format=text").await;
        assert!(body.contains("No routes."));
        assert_eq!(get(&admin, "/nope").await.0, StatusCode::NOT_FOUND);
    }
}
