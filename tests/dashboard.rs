//! The dashboard at `/` on the admin listener, loaded in a real browser: headless Chromium
//! (Debian package `chromium`, installed by .ci/run) renders the page of a running wicket
//! and the test reads the rendered DOM. A screenshot goes to target/dashboard.png.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use http::StatusCode;
use support::*;
use wicket::app::Config;
use wicket::proxy::outlier::OutlierSettings;

fn chromium() -> &'static str {
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(candidate).arg("--version").output().is_ok() {
            return candidate;
        }
    }
    panic!("no Chromium found: install the Debian package `chromium` (.ci/run does)");
}

/// Runs headless Chromium on `url` with `args` (one of --dump-dom, --screenshot=...).
fn browse(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1400,1100",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The opening tag of the first element whose tag contains `marker`.
fn tag<'a>(dom: &'a str, marker: &str) -> &'a str {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in the page"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    &dom[start..=end]
}

/// The rendered row of backend `id` (its own cells, endpoints included).
fn backend_row<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = tag(dom, &format!("data-id=\"{id}\""));
    let at = dom.find(open).unwrap();
    let rest = &dom[at..];
    let end = rest[1..]
        .find("<tr class=\"backend")
        .map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

/// The rendered row of the route for `host`.
fn route_row<'a>(dom: &'a str, host: &str) -> &'a str {
    let at = dom
        .find(&format!("<td>{host}</td>"))
        .unwrap_or_else(|| panic!("no route for {host}"));
    let start = dom[..at].rfind("<tr").unwrap();
    let end = at + dom[at..].find("</tr>").unwrap();
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_states_traffic_and_problems_first_in_a_browser() {
    let web = pods("web", 2).await;
    let flaky = pods("flaky", 1).await;
    let dead = dead_address().await;
    let mut config = Config::local();
    config.outliers = OutlierSettings {
        consecutive_failures: 1,
        base_ejection: Duration::from_secs(300),
        max_ejection: Duration::from_secs(300),
        max_ejected_percent: 50,
    };
    let flaky_ips = [flaky[0].addr.ip().to_string(), dead.ip().to_string()];
    // The dead address listens on another port: a slice of its own.
    let manifests = format!(
        "{CLASS}{}{}{}{}{}{}{}",
        service("web", &web),
        svc("flaky"),
        slice("flaky", "flaky-1", flaky[0].addr.port(), &flaky_ips[..1]),
        slice("flaky", "flaky-2", dead.port(), &flaky_ips[1..]),
        svc("empty"),
        slice("empty", "empty-1", 8080, &[]),
        ingress(
            "site",
            &[
                ("web.test", "/", "Prefix", "web"),
                ("flaky.test", "/", "Prefix", "flaky"),
                ("empty.test", "/", "Prefix", "empty"),
                ("ghost.test", "/", "Prefix", "ghost"),
            ]
        ),
    );
    // A hostile name: reported in a Problem, shown escaped.
    let hostile = "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: evil}\nspec:\n  ingressClassName: wicket\n  rules:\n  - host: \"<script>alert(1)</script>.test\"\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}\n";
    // A TLS host: its certificate, how long it has left and how often it was served.
    let cert = test_cert(&["secure.test"]);
    let secure = format!(
        "{}---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: secure}}\nspec:\n  ingressClassName: wicket\n  tls: [{{hosts: [secure.test], secretName: secure-tls}}]\n  rules:\n  - host: secure.test\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}]}}\n",
        tls_secret("secure-tls", &cert)
    );
    // And one that expires in 5 days: flagged.
    let expiring = {
        use k8s_openapi::jiff::{tz::TimeZone, Timestamp, ToSpan};
        let soon = Timestamp::now()
            .checked_add(120.hours())
            .unwrap()
            .to_zoned(TimeZone::UTC)
            .date();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["soon.test".to_owned()]).unwrap();
        params.not_after =
            rcgen::date_time_ymd(i32::from(soon.year()), soon.month() as u8, soon.day() as u8);
        let c = params.self_signed(&key).unwrap();
        TestCert {
            pem: c.pem(),
            key_pem: key.serialize_pem(),
            der: c.der().clone(),
            key_der: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    };
    let soon = format!(
        "{}---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: soon}}\nspec:\n  ingressClassName: wicket\n  tls: [{{hosts: [soon.test], secretName: soon-tls}}]\n  rules:\n  - host: soon.test\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}]}}\n",
        tls_secret("soon-tls", &expiring)
    );
    let w = Wicket::start_with(&format!("{manifests}{hostile}{secure}{soon}"), config).await;
    for _ in 0..2 {
        tls_connect(w.https(), Some("secure.test"), &[b"http/1.1"]).await;
    }

    for _ in 0..30 {
        assert_eq!(w.get("web.test", "/").await.status, StatusCode::OK);
    }
    // The dead endpoint fails once and is ejected; the live one answers every request.
    for _ in 0..6 {
        assert_eq!(w.get("flaky.test", "/").await.status, StatusCode::OK);
    }
    assert_eq!(
        w.get("empty.test", "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let url = format!("http://{}/", w.admin);
    let dom = browse(&url, &["--dump-dom"]);

    // Problems come first, above the backends.
    let problems = dom.find("id=\"problems\"").expect("a Problems section");
    assert!(problems < dom.find("id=\"backends\"").unwrap());
    assert!(dom.contains("Service default/ghost not found"), "{dom}");
    // Hostile names are text, never markup: the page's only script is its own.
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_eq!(dom.matches("<script").count(), 1, "{dom}");

    // Each backend in its state, with its endpoints.
    assert!(tag(&dom, "data-id=\"default/web:80\"").contains("backend up"));
    assert!(tag(&dom, "data-id=\"default/flaky:80\"").contains("backend degraded"));
    assert!(tag(&dom, "data-id=\"default/empty:80\"").contains("backend down"));
    let web_row = backend_row(&dom, "default/web:80");
    assert!(web_row.contains(">2/2<"), "{web_row}");
    assert_eq!(web_row.matches("class=\"endpoint ready\"").count(), 2);
    let flaky_row = backend_row(&dom, "default/flaky:80");
    assert_eq!(flaky_row.matches("class=\"endpoint ejected\"").count(), 1);
    assert!(flaky_row.contains(&dead.to_string()), "{flaky_row}");
    let empty_row = backend_row(&dom, "default/empty:80");
    assert!(
        empty_row.contains("the Service has no endpoints"),
        "{empty_row}"
    );
    // Broken first: the down backend's row comes before the healthy one.
    assert!(dom.find("default/empty:80").unwrap() < dom.find("default/web:80").unwrap());

    // The last minute's traffic: web answered 30 requests, all 2xx.
    let json: serde_json::Value =
        serde_json::from_str(&w.admin_get("/?format=json").await.body).unwrap();
    let web_json = json["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == "default/web:80")
        .unwrap();
    assert_eq!(web_json["traffic"]["ok"], 30, "{web_json}");
    assert!(web_row.contains("data-v=\"30\">30<"), "{web_row}");
    let flaky_json = json["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == "default/flaky:80")
        .unwrap();
    assert_eq!(flaky_json["traffic"]["connectErrors"], 1, "{flaky_json}");

    // The certificates: one with years left (rcgen's default), served twice; one that
    // expires within 14 days, flagged.
    let certs = json["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2, "{certs:?}");
    let secure = certs.iter().find(|c| c["host"] == "secure.test").unwrap();
    assert_eq!(secure["secret"], "default/secure-tls");
    assert_eq!(secure["served"], 2);
    assert_eq!(secure["warn"], false);
    let soon = certs.iter().find(|c| c["host"] == "soon.test").unwrap();
    assert!(
        (3..=5).contains(&soon["daysLeft"].as_i64().unwrap()),
        "{soon}"
    );
    assert_eq!(soon["warn"], true);
    assert!(tag(&dom, "class=\"certificate warn").contains("warn"));

    // Routes with their badges: the one whose Service is missing shows 503, the TLS host
    // its TLS badge, the route to the empty backend that backend's state.
    assert!(route_row(&dom, "ghost.test").contains("pill down"));
    assert!(route_row(&dom, "secure.test").contains("badge TLS"));
    assert!(route_row(&dom, "empty.test").contains("pill down\">down"));
    assert!(!route_row(&dom, "web.test").contains("pill"));

    // The page refreshes itself (its script runs without errors): after 6 s of the
    // browser's virtual time it has fetched and swapped in a fresh copy.
    let later = browse(&url, &["--virtual-time-budget=6500", "--dump-dom"]);
    assert!(
        tag(&later, "id=\"live\"").contains("data-refreshed=\""),
        "{later}"
    );
    assert!(tag(&later, "data-id=\"default/flaky:80\"").contains("backend degraded"));

    // ?q= narrows every table to what matches, on the server.
    let narrowed: serde_json::Value =
        serde_json::from_str(&w.admin_get("/?format=json&q=FLAKY").await.body).unwrap();
    let ids: Vec<&str> = narrowed["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["default/flaky:80"]);
    assert_eq!(narrowed["routes"].as_array().unwrap().len(), 1);

    // For people: a screenshot next to the build output.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard.png");
    browse(&url, &[&format!("--screenshot={}", shot.display())]);
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    // A terminal gets text; an unknown page a 404 with the way back.
    let text = w.admin_get("/?format=text").await.body;
    assert!(text.contains("Problems ("), "{text}");
    assert!(text.contains("default/empty:80"), "{text}");
    let lost = w
        .send(
            http::Request::get(format!("http://{}/nope", w.admin))
                .header("accept", "text/html")
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(lost.status, StatusCode::NOT_FOUND);
    assert!(lost.body.contains("href=\"/\""));
    w.stop().await;
}
