//! `wicket migrate`: what switching from ingress-nginx does to each Ingress, before the
//! switch.
//!
//! The Ingresses of the class being left (`--from-class`, default `nginx`, and those with
//! no class) are translated exactly as `wicket run` would translate them (the same code,
//! so the same outcomes as `/debug/routes` and the README's table), and each
//! `nginx.ingress.kubernetes.io/*` annotation is reported as honoured, honoured with a
//! stated difference, ignored, or refused (the Ingress is not served, or its routes answer
//! 503), with why. The ingress-nginx ConfigMap becomes wicket flags. Exit code 1 when
//! anything would be refused.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressClassSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::controller::class::CLASS_ANNOTATION;
use crate::controller::index::{Index, Key, Object};
use crate::controller::translate::annotations::NGINX_PREFIX;
use crate::controller::{translate, Settings};
use crate::model::{AnnotationOutcome, Outcome};

/// What migrating means, in the four words a user plans with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Honoured,
    /// Honoured, with a difference the note states.
    Differs,
    /// No effect under wicket: the Ingress is served without it.
    Ignored,
    /// The Ingress is not served, or its routes answer 503, because of it.
    Refused,
}

impl Verdict {
    fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Honoured | Outcome::NoEffectNeeded => Verdict::Honoured,
            Outcome::Differs => Verdict::Differs,
            Outcome::Unsupported | Outcome::Invalid => Verdict::Ignored,
            Outcome::Refused | Outcome::Blocks => Verdict::Refused,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Verdict::Honoured => "honoured",
            Verdict::Differs => "honoured, differs",
            Verdict::Ignored => "ignored",
            Verdict::Refused => "refused",
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotation {
    pub name: String,
    pub verdict: Verdict,
    /// wicket's own outcome (`/debug/routes`).
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressReport {
    pub namespace: String,
    pub name: String,
    /// Served as is; else why not (not served, or its routes answer 503).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    pub annotations: Vec<Annotation>,
}

/// One ingress-nginx ConfigMap key and what to run wicket with instead.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Setting {
    pub key: String,
    pub value: String,
    /// The flags to add (none: nothing to do, or no equivalent).
    pub flags: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The class being left.
    pub from_class: String,
    pub ingresses: Vec<IngressReport>,
    /// The ConfigMap's keys as flags (empty without `--nginx-configmap`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<Setting>,
    /// The IngressClass steps.
    pub steps: Vec<String>,
    /// Something would be refused: the exit code is 1.
    pub refused: bool,
}

/// The Ingresses of `from_class` (and those without a class) in `source`, translated as
/// wicket would serve them, with `settings` (the `run` flags).
pub fn migrate(
    source: &Index,
    settings: &Settings,
    from_class: &str,
    nginx_config: Option<&ConfigMap>,
) -> Report {
    let mut index = Index::new();
    let mut leaving = 0usize;
    let mut selected = Vec::new();
    for (key, ingress) in &source.ingresses {
        let class = class_of(ingress);
        if class.is_some_and(|c| c != from_class) {
            continue;
        }
        leaving += usize::from(class.is_some());
        // Served by wicket's class, as after the switch.
        let mut moved = (**ingress).clone();
        if let Some(a) = moved.metadata.annotations.as_mut() {
            a.remove(CLASS_ANNOTATION);
        }
        moved
            .spec
            .get_or_insert_with(Default::default)
            .ingress_class_name = Some(settings.ingress_class.clone());
        index.apply(Object::Ingress(Arc::new(moved)));
        selected.push(key.clone());
    }
    index.apply(Object::IngressClass(Arc::new(IngressClass {
        metadata: ObjectMeta {
            name: Some(settings.ingress_class.clone()),
            ..Default::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some(settings.controller_name.clone()),
            ..Default::default()
        }),
    })));
    // What the annotations read: Services (upstreams), Secrets and ConfigMaps.
    index.services.clone_from(&source.services);
    index.slices.clone_from(&source.slices);
    index.endpoints.clone_from(&source.endpoints);
    index.secrets.clone_from(&source.secrets);
    index.named_secrets.clone_from(&source.named_secrets);
    index.config_maps.clone_from(&source.config_maps);
    let snapshot = translate::build(&index, settings);
    let by_ingress: BTreeMap<(String, String), _> = snapshot
        .annotations
        .iter()
        .map(|a| {
            (
                (
                    a.ingress.namespace.clone().unwrap_or_default(),
                    a.ingress.name.clone(),
                ),
                a,
            )
        })
        .collect();
    let mut ingresses = Vec::new();
    for key in selected {
        let found = by_ingress.get(&(key.namespace.clone(), key.name.clone()));
        let annotations: Vec<Annotation> = found
            .map(|a| a.annotations.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|a| a.name.starts_with(NGINX_PREFIX))
            .map(|a: &AnnotationOutcome| Annotation {
                name: a.name.clone(),
                verdict: Verdict::of(a.outcome),
                outcome: a.outcome,
                note: a.note.clone(),
            })
            .collect();
        ingresses.push(IngressReport {
            namespace: key.namespace,
            name: key.name,
            refused: found.and_then(|a| a.refused.clone()),
            annotations,
        });
    }
    let config = nginx_config.map(config_flags).unwrap_or_default();
    let refused = ingresses.iter().any(|i| {
        i.refused.is_some() || i.annotations.iter().any(|a| a.verdict == Verdict::Refused)
    });
    Report {
        from_class: from_class.to_owned(),
        steps: steps(from_class, leaving, ingresses.len()),
        ingresses,
        config,
        refused,
    }
}

fn class_of(ingress: &Ingress) -> Option<&str> {
    ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ingress
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CLASS_ANNOTATION))
                .map(String::as_str)
        })
}

fn steps(from_class: &str, leaving: usize, total: usize) -> Vec<String> {
    vec![
        format!("Install wicket next to ingress-nginx: `helm install wicket charts/wicket -n wicket --create-namespace` creates the IngressClass `wicket` and leaves the {leaving} Ingress(es) of class `{from_class}` alone."),
        "Review what is refused or differs above (and `/debug/routes` once an Ingress is served).".to_owned(),
        format!("Move the {total} Ingress(es) one at a time: `kubectl patch ingress NAME -n NS --type merge -p '{{\"spec\":{{\"ingressClassName\":\"wicket\"}}}}'` (remove a `kubernetes.io/ingress.class` annotation if it has one); moving back is the same edit with `{from_class}`."),
        format!("Or take over the class once everything is reviewed: stop ingress-nginx, then run wicket with `--controller-name k8s.io/ingress-nginx --ingress-class {from_class}` (chart: `ingressClass.create=false`, `ingressClass.name={from_class}`, `ingressClass.controllerName=k8s.io/ingress-nginx`)."),
    ]
}

/// ingress-nginx's ConfigMap keys as wicket flags (the README's table).
fn config_flags(map: &ConfigMap) -> Vec<Setting> {
    let data = map.data.clone().unwrap_or_default();
    let mut out = Vec::new();
    let seconds = |v: &str| -> Option<String> {
        let v = v.trim();
        if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() {
            Some(format!("{v}s"))
        } else if humantime::parse_duration(v).is_ok() {
            Some(v.to_owned())
        } else {
            None
        }
    };
    let is_true = |v: &str| matches!(v.trim(), "true" | "True" | "TRUE" | "1" | "t" | "T");
    for (key, value) in &data {
        let v = value.trim();
        let (flags, note): (Vec<String>, String) = match key.as_str() {
            "proxy-body-size" => (vec![format!("--max-request-body={v}")], String::new()),
            "proxy-connect-timeout" => match seconds(v) {
                Some(d) => (vec![format!("--upstream-connect-timeout={d}")], String::new()),
                None => (Vec::new(), "not a number of seconds; the default (5s) stays".into()),
            },
            "proxy-read-timeout" => match seconds(v) {
                Some(d) => (
                    vec![
                        format!("--upstream-timeout={d}"),
                        format!("--upstream-read-timeout={d}"),
                    ],
                    String::new(),
                ),
                None => (Vec::new(), "not a number of seconds; the default (60s) stays".into()),
            },
            "proxy-send-timeout" => match seconds(v) {
                Some(d) => (vec![format!("--upstream-send-timeout={d}")], String::new()),
                None => (Vec::new(), "not a number of seconds; the default (60s) stays".into()),
            },
            "client-header-timeout" | "client-body-timeout" => match seconds(v) {
                Some(d) => (vec![format!("--{key}={d}")], String::new()),
                None => (Vec::new(), "not a number of seconds; the default (60s) stays".into()),
            },
            "keep-alive" => match seconds(v) {
                Some(d) => (vec![format!("--keepalive-timeout={d}")], String::new()),
                None => (Vec::new(), "not a number of seconds".into()),
            },
            "max-worker-connections" => (
                vec![format!("--max-connections={v}")],
                "one process serves every listener".into(),
            ),
            "whitelist-source-range" | "allowlist-source-range" => {
                (vec![format!("--allowlist-source-range={v}")], String::new())
            }
            "denylist-source-range" => (vec![format!("--denylist-source-range={v}")], String::new()),
            "global-allowed-response-headers" => {
                (vec![format!("--allowed-response-headers={v}")], String::new())
            }
            "use-forwarded-headers" | "compute-full-forwarded-for" if is_true(v) => {
                match data.get("proxy-real-ip-cidr") {
                    Some(cidrs) => (vec![format!("--trusted-proxies={}", cidrs.trim())], String::new()),
                    None => (
                        Vec::new(),
                        "set --trusted-proxies to your load balancers' ranges: ingress-nginx then believes X-Forwarded-For from anyone (proxy-real-ip-cidr 0.0.0.0/0), wicket never does implicitly".into(),
                    ),
                }
            }
            "proxy-real-ip-cidr" => (Vec::new(), "used with use-forwarded-headers".into()),
            "use-proxy-protocol" if is_true(v) => (vec!["--proxy-protocol".into()], String::new()),
            "enable-underscores-in-headers" if is_true(v) => {
                (vec!["--allow-underscores-in-headers".into()], String::new())
            }
            "ssl-redirect" if !is_true(v) => (vec!["--no-ssl-redirect".into()], String::new()),
            "hsts" if !is_true(v) => (Vec::new(), "wicket sends no HSTS unless --hsts".into()),
            "hsts-max-age" => (vec![format!("--hsts-max-age={v}")], String::new()),
            "hsts-include-subdomains" if is_true(v) => {
                (vec!["--hsts-include-subdomains".into()], String::new())
            }
            "worker-shutdown-timeout" => match seconds(v) {
                Some(d) => (vec![format!("--shutdown-timeout={d}")], String::new()),
                None => (Vec::new(), "not a duration".into()),
            },
            "shutdown-grace-period" => match seconds(v) {
                Some(d) => (vec![format!("--shutdown-delay={d}")], String::new()),
                None => (Vec::new(), "not a duration".into()),
            },
            "limit-req-status-code" | "limit-conn-status-code" => (
                vec![format!("--limit-status-code={v}")],
                "one status for both limits".into(),
            ),
            "allow-snippet-annotations" | "annotations-risk-level" => (
                Vec::new(),
                "snippets are never supported: an Ingress with one is not served unless --ignore-snippets".into(),
            ),
            "use-forwarded-headers" | "use-proxy-protocol" | "enable-underscores-in-headers"
            | "ssl-redirect" | "hsts" | "hsts-include-subdomains" | "compute-full-forwarded-for" => {
                (Vec::new(), "wicket's default already".into())
            }
            _ => (Vec::new(), "no wicket equivalent; not carried over".into()),
        };
        out.push(Setting {
            key: key.clone(),
            value: value.clone(),
            flags,
            note,
        });
    }
    if !data.contains_key("hsts") {
        out.push(Setting {
            key: "hsts".into(),
            value: "(unset: true in ingress-nginx)".into(),
            flags: vec!["--hsts".into()],
            note:
                "ingress-nginx sends Strict-Transport-Security by default, wicket only with --hsts"
                    .into(),
        });
    }
    out
}

/// The human table.
pub fn to_text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Ingresses of class {:?} (and without a class), as wicket would serve them:",
        report.from_class
    );
    if report.ingresses.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for ingress in &report.ingresses {
        let state = match &ingress.refused {
            Some(why) => format!("REFUSED: {why}"),
            None => "served".to_owned(),
        };
        let _ = writeln!(out, "\n{}/{}  {state}", ingress.namespace, ingress.name);
        if ingress.annotations.is_empty() {
            let _ = writeln!(out, "  (no ingress-nginx annotations)");
        }
        let width = ingress
            .annotations
            .iter()
            .map(|a| a.name.len())
            .max()
            .unwrap_or(0);
        for a in &ingress.annotations {
            let _ = write!(out, "  {:width$}  {:17}", a.name, a.verdict.as_str());
            if a.note.is_empty() {
                let _ = writeln!(out);
            } else {
                let _ = writeln!(out, "  {}", a.note);
            }
        }
    }
    if !report.config.is_empty() {
        let _ = writeln!(out, "\nThe ingress-nginx ConfigMap as wicket flags:");
        for s in &report.config {
            let flags = if s.flags.is_empty() {
                "-".to_owned()
            } else {
                s.flags.join(" ")
            };
            let _ = write!(out, "  {} = {:?}  ->  {flags}", s.key, s.value);
            if s.note.is_empty() {
                let _ = writeln!(out);
            } else {
                let _ = writeln!(out, "  ({})", s.note);
            }
        }
        let all: Vec<&str> = report
            .config
            .iter()
            .flat_map(|s| s.flags.iter().map(String::as_str))
            .collect();
        if !all.is_empty() {
            let _ = writeln!(out, "\n  wicket run {}", all.join(" "));
        }
    }
    let _ = writeln!(out, "\nSteps:");
    for (i, step) in report.steps.iter().enumerate() {
        let _ = writeln!(out, "  {}. {step}", i + 1);
    }
    let counts = |v: Verdict| {
        report
            .ingresses
            .iter()
            .flat_map(|i| &i.annotations)
            .filter(|a| a.verdict == v)
            .count()
    };
    let _ = writeln!(
        out,
        "\n{} Ingress(es): {} annotation(s) honoured, {} differ, {} ignored, {} refused; {} Ingress(es) refused.",
        report.ingresses.len(),
        counts(Verdict::Honoured),
        counts(Verdict::Differs),
        counts(Verdict::Ignored),
        counts(Verdict::Refused),
        report.ingresses.iter().filter(|i| i.refused.is_some()).count()
    );
    out
}

/// A ConfigMap named `NS/NAME` in `index`, for `--nginx-configmap` in manifests mode.
pub fn config_map_in(index: &Index, name: &str) -> Option<ConfigMap> {
    let (ns, name) = name.split_once('/')?;
    index
        .config_maps
        .get(&Key::new(ns, name))
        .map(|m| (**m).clone())
}

/// What `migrate` reads from a cluster: every Ingress, IngressClass, Service and ConfigMap,
/// and the Secrets the Ingresses name for access guards (each by name, in its namespace);
/// with the ingress-nginx ConfigMap `NS/NAME` if asked for.
pub async fn load_cluster(
    client: kube::Client,
    nginx_config: Option<&str>,
) -> Result<(Index, Option<ConfigMap>), kube::Error> {
    use k8s_openapi::api::core::v1::{Secret, Service};
    use kube::api::{Api, ListParams};
    let lp = ListParams::default();
    let mut index = Index::new();
    for o in Api::<Ingress>::all(client.clone()).list(&lp).await? {
        index.apply(Object::Ingress(Arc::new(o)));
    }
    for o in Api::<IngressClass>::all(client.clone()).list(&lp).await? {
        index.apply(Object::IngressClass(Arc::new(o)));
    }
    for o in Api::<Service>::all(client.clone()).list(&lp).await? {
        index.apply(Object::Service(Arc::new(o)));
    }
    for o in Api::<ConfigMap>::all(client.clone()).list(&lp).await? {
        index.apply(Object::ConfigMap(Arc::new(o)));
    }
    for key in crate::controller::cluster::watch::named_secrets(&index.ingresses) {
        let api: Api<Secret> = Api::namespaced(client.clone(), &key.namespace);
        if let Some(secret) = api.get_opt(&key.name).await? {
            index.named_secrets.insert(key, Arc::new(secret));
        }
    }
    let config = nginx_config.and_then(|name| config_map_in(&index, name));
    Ok((index, config))
}
