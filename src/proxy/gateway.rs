//! The request and response edits of a Gateway API rule (GATEWAY-API.md, filters): its
//! RequestHeaderModifier becomes headers set on the request to the pod, URLRewrite's path
//! the request target the pod gets, and ResponseHeaderModifier is applied to whatever the
//! client is answered. Matching and the choice of the rule are the snapshot's
//! (`model::gateway`); redirects are answered by `redirect::gateway`.

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use super::error::ProxyError;
use crate::model::gateway::{Action, GatewayRule, HeaderEdits, PathRewrite};

/// The request edits as the forward step applies them: each name removed, then set to
/// the value if there is one. `add` joins the client's values and the added one with `,`.
pub fn edit_request(
    edits: &HeaderEdits,
    request: &HeaderMap,
    out: &mut Vec<(HeaderName, Option<HeaderValue>)>,
) {
    for (name, value) in &edits.set {
        out.push((name.clone(), Some(value.clone())));
    }
    for (name, value) in &edits.add {
        let mut joined = Vec::new();
        for existing in request.get_all(name) {
            joined.extend_from_slice(existing.as_bytes());
            joined.push(b',');
        }
        let value = if joined.is_empty() {
            value.clone()
        } else {
            joined.extend_from_slice(value.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| value.clone())
        };
        out.push((name.clone(), Some(value)));
    }
    for name in &edits.remove {
        out.push((name.clone(), None));
    }
}

/// The path and query the pod gets under a URLRewrite path modifier (the query is kept).
pub fn rewritten(rewrite: &PathRewrite, uri: &Uri) -> Result<PathAndQuery, ProxyError> {
    let mut target = rewrite.apply(uri.path());
    if let Some(query) = uri.query() {
        target.push('?');
        target.push_str(query);
    }
    PathAndQuery::try_from(target)
        .map_err(|_| ProxyError::BadRequest("the rewritten path is invalid"))
}

/// The rule's, then the chosen backendRef's, ResponseHeaderModifier.
pub fn edit_response(rule: &GatewayRule, chosen: usize, headers: &mut HeaderMap) {
    let Action::Forward(forward) = &rule.action else {
        return;
    };
    if let Some(edits) = &forward.response {
        edits.apply(headers);
    }
    if let Some(edits) = forward
        .backends
        .get(chosen)
        .and_then(|b| b.response.as_ref())
    {
        edits.apply(headers);
    }
}
