//! `wicket routes` and `wicket explain`: the admin endpoint of a running wicket, from the
//! command line (in a cluster, through `kubectl port-forward`).

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{0:?} is not an http:// admin URL")]
    BadUrl(String),
    #[error(
        "cannot reach wicket's admin endpoint at {url}: {why}; is wicket running? In a cluster: \
         kubectl -n NAMESPACE port-forward deployment/wicket 10254:10254"
    )]
    Unreachable { url: String, why: String },
    #[error("{url} answered {status}: {body}")]
    Refused {
        url: String,
        status: StatusCode,
        body: String,
    },
}

/// The routing table (text, or JSON), optionally only for the virtual host `host` gets.
pub async fn routes(admin: &str, host: Option<&str>, json: bool) -> Result<String, InspectError> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("format", if json { "json" } else { "text" });
    if let Some(host) = host {
        query.append_pair("host", host);
    }
    get(admin, "/debug/routes", &query.finish()).await
}

/// Where a request for `host` + `path` goes, and why.
pub async fn explain(
    admin: &str,
    host: &str,
    path: &str,
    json: bool,
) -> Result<String, InspectError> {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("host", host)
        .append_pair("path", path)
        .append_pair("format", if json { "json" } else { "text" })
        .finish();
    get(admin, "/debug/explain", &query).await
}

async fn get(admin: &str, path: &str, query: &str) -> Result<String, InspectError> {
    let base = admin.trim_end_matches('/');
    if !base.starts_with("http://") {
        return Err(InspectError::BadUrl(admin.to_owned()));
    }
    let url = format!("{base}{path}?{query}");
    let request = Request::get(&url)
        .body(Empty::<Bytes>::new())
        .map_err(|_| InspectError::BadUrl(admin.to_owned()))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let unreachable = |why: String| InspectError::Unreachable {
        url: base.to_owned(),
        why,
    };
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(10), client.request(request))
            .await
            .map_err(|_| unreachable("no answer within 10s".into()))?
            .map_err(|e| unreachable(crate::telemetry::error_chain(&e)))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() {
        Ok(body)
    } else {
        Err(InspectError::Refused { url, status, body })
    }
}
