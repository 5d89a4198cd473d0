//! The redirect phase: after the route and its body limit are known and before anything is
//! proxied (INGRESS-NGINX.md §A6), an Ingress's own redirect (`permanent-redirect`,
//! `temporal-redirect`), then the redirect of plain HTTP to HTTPS (`ssl-redirect` for TLS
//! hosts, `force-ssl-redirect` for any).

use http::header::{HeaderValue, CONTENT_TYPE, LOCATION, SERVER};
use http::{Response, StatusCode, Uri};

use super::body::ProxyBody;
use crate::model::{AppRoot, Redirect};

/// The Ingress's redirect: its URL as written when absolute; a path is made absolute with
/// the request's scheme and host, as nginx does.
pub fn configured(redirect: &Redirect, host: &str, tls: bool) -> Response<ProxyBody> {
    let code = StatusCode::from_u16(redirect.code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    let value = redirect.location.as_bytes();
    let absolute = value.starts_with(b"http://") || value.starts_with(b"https://");
    let location = if absolute || redirect.relative {
        redirect.location.clone()
    } else {
        let scheme = if tls { "https" } else { "http" };
        let text = format!("{scheme}://{host}{}", String::from_utf8_lossy(value));
        HeaderValue::try_from(text).unwrap_or_else(|_| redirect.location.clone())
    };
    respond(code, location)
}

/// 308 to the same host, path and query over HTTPS. As ingress-nginx does, one trailing
/// `/` of the request target is left out (`GET /` → `https://host`) unless the Ingress
/// asks to preserve it; the port is written only when it is not 443.
pub fn https(
    host: &str,
    uri: &Uri,
    port: u16,
    preserve_trailing_slash: bool,
) -> Response<ProxyBody> {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let target = if preserve_trailing_slash {
        target
    } else {
        target.strip_suffix('/').unwrap_or(target)
    };
    let location = if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    };
    match HeaderValue::try_from(location) {
        Ok(location) => respond(StatusCode::PERMANENT_REDIRECT, location),
        Err(_) => respond(
            StatusCode::PERMANENT_REDIRECT,
            HeaderValue::from_static("/"),
        ),
    }
}

/// `from-to-www-redirect`: 308 to the other name, with the port written as ingress-nginx
/// does (here the public port of the scheme) and one trailing `/` left out.
pub fn www(to: &str, uri: &Uri, tls: bool, port: u16) -> Response<ProxyBody> {
    let scheme = if tls { "https" } else { "http" };
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let target = target.strip_suffix('/').unwrap_or(target);
    let location = format!("{scheme}://{to}:{port}{target}");
    match HeaderValue::try_from(location) {
        Ok(location) => respond(StatusCode::PERMANENT_REDIRECT, location),
        Err(_) => respond(
            StatusCode::PERMANENT_REDIRECT,
            HeaderValue::from_static("/"),
        ),
    }
}

/// `app-root`: 302 from `/` to the root path on the host as the client wrote it (port
/// included); the query string only when the annotation asked for it.
pub fn app_root(root: &AppRoot, host: &str, uri: &Uri, tls: bool) -> Response<ProxyBody> {
    let scheme = if tls { "https" } else { "http" };
    let query = match (root.keep_query, uri.query()) {
        (true, Some(q)) => format!("?{q}"),
        _ => String::new(),
    };
    let location = format!("{scheme}://{host}{}{query}", root.path);
    match HeaderValue::try_from(location) {
        Ok(location) => respond(StatusCode::FOUND, location),
        Err(_) => respond(StatusCode::FOUND, HeaderValue::from_static("/")),
    }
}

/// `rewrite-target` to a URL: 302 to it (nginx's `rewrite` with an http(s) replacement).
pub fn rewrite(location: &str) -> Response<ProxyBody> {
    match HeaderValue::try_from(location) {
        Ok(location) => respond(StatusCode::FOUND, location),
        Err(_) => respond(StatusCode::FOUND, HeaderValue::from_static("/")),
    }
}

/// A Gateway API RequestRedirect: `location` built by the rule.
pub fn gateway(status: u16, location: &str) -> Response<ProxyBody> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
    match HeaderValue::try_from(location) {
        Ok(location) => respond(code, location),
        Err(_) => respond(code, HeaderValue::from_static("/")),
    }
}

fn respond(code: StatusCode, location: HeaderValue) -> Response<ProxyBody> {
    let body = format!(
        "{} {}\n",
        code.as_u16(),
        code.canonical_reason().unwrap_or("redirect")
    );
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(LOCATION, location);
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(SERVER, HeaderValue::from_static("wicket"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(r: &Response<ProxyBody>) -> &str {
        r.headers()[LOCATION].to_str().unwrap()
    }

    #[test]
    fn the_https_redirect_drops_one_trailing_slash_unless_preserved() {
        let uri: Uri = "/".parse().unwrap();
        assert_eq!(
            location(&https("a.test", &uri, 443, false)),
            "https://a.test"
        );
        assert_eq!(
            location(&https("a.test", &uri, 443, true)),
            "https://a.test/"
        );
        let uri: Uri = "/docs/".parse().unwrap();
        assert_eq!(
            location(&https("a.test", &uri, 8443, false)),
            "https://a.test:8443/docs"
        );
        let uri: Uri = "/cart?id=7".parse().unwrap();
        let r = https("a.test", &uri, 443, false);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(location(&r), "https://a.test/cart?id=7");
    }

    #[test]
    fn a_configured_redirect_is_verbatim_or_made_absolute() {
        let absolute = Redirect {
            code: 301,
            location: HeaderValue::from_static("https://new.example/x?y=1"),
            relative: false,
        };
        let r = configured(&absolute, "a.test", false);
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(location(&r), "https://new.example/x?y=1");
        let relative = Redirect {
            code: 302,
            location: HeaderValue::from_static("/new-location"),
            relative: false,
        };
        assert_eq!(
            location(&configured(&relative, "rr.foo.com", false)),
            "http://rr.foo.com/new-location"
        );
        assert_eq!(
            location(&configured(&relative, "rr.foo.com", true)),
            "https://rr.foo.com/new-location"
        );
        // relative-redirects: "true" keeps the path (e2e relativeredirects.go).
        let kept = Redirect {
            relative: true,
            ..relative
        };
        assert_eq!(
            location(&configured(&kept, "rr.foo.com", false)),
            "/new-location"
        );
    }
}
