//! Manifest text → Kubernetes objects, with every problem said in words.
//!
//! A file holds one or more YAML documents (or one JSON value); a document may be a
//! `kind: List`. Documents of kinds wicket does not read are skipped. Each object is
//! checked as the API server would: known apiVersion, a name, fields of the right type
//! (the error names the field path), and no unknown fields (reported, object still used,
//! like `kubectl --validate=warn`). Objects without a namespace are in `default`.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use tracing::debug;

use super::gateway_api;
use super::index::{Key, Kind, Object};
use crate::model::{ObjectRef, Problem, Reason};

/// The namespace of objects that do not say.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What one file gave.
#[derive(Debug, Default)]
pub struct Parsed {
    pub objects: Vec<Object>,
    pub problems: Vec<Problem>,
    /// The text could not be read as YAML/JSON at all: nothing in it can be trusted.
    pub unreadable: bool,
    /// Objects whose document was recognised (kind and name known) but is invalid; the
    /// caller keeps their last good version.
    pub invalid: Vec<(Kind, Key)>,
}

/// Parses a file's text. `origin` names the file in messages.
pub fn parse(origin: &str, text: &str, json: bool) -> Parsed {
    let mut out = Parsed::default();
    let file = || ObjectRef::new("File", None, origin);
    if json {
        match serde_json::from_str::<Value>(text) {
            Ok(value) => document(origin, 0, value, &mut out),
            Err(e) => {
                out.unreadable = true;
                out.problems.push(Problem::new(
                    file(),
                    Reason::InvalidManifest,
                    format!("not valid JSON: {e}"),
                ));
            }
        }
        return out;
    }
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = match serde_yaml_ng::Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                out.unreadable = true;
                out.problems.push(Problem::new(
                    file(),
                    Reason::InvalidManifest,
                    format!("not valid YAML: {e}"),
                ));
                return out;
            }
        };
        if value.is_null() {
            continue; // an empty document, e.g. after a trailing `---`
        }
        match serde_json::to_value(&value) {
            Ok(value) => document(origin, i, value, &mut out),
            Err(e) => out.problems.push(Problem::new(
                file(),
                Reason::InvalidManifest,
                format!("document {}: cannot be read as an object: {e}", i + 1),
            )),
        }
    }
    out
}

fn document(origin: &str, index: usize, value: Value, out: &mut Parsed) {
    let file = || ObjectRef::new("File", None, origin);
    let place = format!("{origin} (document {})", index + 1);
    let Value::Object(map) = &value else {
        out.problems.push(Problem::new(
            file(),
            Reason::InvalidManifest,
            format!("document {} is not an object", index + 1),
        ));
        return;
    };
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version.is_empty() || kind.is_empty() {
        out.problems.push(Problem::new(
            file(),
            Reason::InvalidManifest,
            format!("document {} has no apiVersion or kind", index + 1),
        ));
        return;
    }
    if kind == "List" || kind.ends_with("List") && map.contains_key("items") {
        let items = map
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for item in items {
            document(origin, index, item, out);
        }
        return;
    }
    let (kind, expected) = match kind {
        "Ingress" => (Kind::Ingress, "networking.k8s.io/v1"),
        "IngressClass" => (Kind::IngressClass, "networking.k8s.io/v1"),
        "Service" => (Kind::Service, "v1"),
        "Endpoints" => (Kind::Endpoints, "v1"),
        "Secret" => (Kind::Secret, "v1"),
        "ConfigMap" => (Kind::ConfigMap, "v1"),
        "EndpointSlice" => (Kind::EndpointSlice, "discovery.k8s.io/v1"),
        "Namespace" => (Kind::Namespace, "v1"),
        "GatewayClass" => (Kind::GatewayClass, gateway_api::API_VERSION),
        "Gateway" => (Kind::Gateway, gateway_api::API_VERSION),
        "HTTPRoute" => (Kind::HttpRoute, gateway_api::API_VERSION),
        "GRPCRoute" => (Kind::GrpcRoute, gateway_api::API_VERSION),
        "ReferenceGrant" => (Kind::ReferenceGrant, gateway_api::API_VERSION),
        other => {
            debug!(
                file = origin,
                kind = other,
                "skipping a kind wicket does not read"
            );
            return;
        }
    };

    let meta = map.get("metadata").and_then(Value::as_object);
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let namespace = if kind.is_namespaced() {
        meta.and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_owned()
    } else {
        String::new()
    };
    let (name, namespace) = (name.as_str(), namespace.as_str());
    let object_ref = ObjectRef::new(
        kind.as_str(),
        kind.is_namespaced().then_some(namespace),
        if name.is_empty() { "(unnamed)" } else { name },
    );
    if name.is_empty() {
        out.problems.push(Problem::new(
            object_ref,
            Reason::InvalidManifest,
            format!("in {place}: has no metadata.name"),
        ));
        return;
    }
    let also_served =
        kind == Kind::ReferenceGrant && api_version == gateway_api::API_VERSION_V1BETA1;
    if api_version != expected && !also_served {
        out.problems.push(Problem::new(
            object_ref,
            Reason::InvalidManifest,
            format!(
                "in {place}: apiVersion {api_version} is not supported for {kind}; use {expected}"
            ),
        ));
        out.invalid.push((kind, Key::new(namespace, name)));
        return;
    }

    let typed = match kind {
        Kind::Ingress => typed(value, kind).map(|(o, u)| (Object::Ingress(Arc::new(o)), u)),
        Kind::IngressClass => {
            typed(value, kind).map(|(o, u)| (Object::IngressClass(Arc::new(o)), u))
        }
        Kind::Service => typed(value, kind).map(|(o, u)| (Object::Service(Arc::new(o)), u)),
        Kind::EndpointSlice => {
            typed(value, kind).map(|(o, u)| (Object::EndpointSlice(Arc::new(o)), u))
        }
        Kind::Endpoints => typed(value, kind).map(|(o, u)| (Object::Endpoints(Arc::new(o)), u)),
        Kind::Secret => typed(value, kind).map(|(o, u)| (Object::Secret(Arc::new(o)), u)),
        Kind::ConfigMap => typed(value, kind).map(|(o, u)| (Object::ConfigMap(Arc::new(o)), u)),
        Kind::Namespace => typed(value, kind).map(|(o, u)| (Object::Namespace(Arc::new(o)), u)),
        Kind::GatewayClass => {
            typed(value, kind).map(|(o, u)| (Object::GatewayClass(Arc::new(o)), u))
        }
        Kind::Gateway => typed(value, kind).map(|(o, u)| (Object::Gateway(Arc::new(o)), u)),
        Kind::HttpRoute => typed(value, kind).map(|(o, u)| (Object::HttpRoute(Arc::new(o)), u)),
        Kind::GrpcRoute => typed(value, kind).map(|(o, u)| (Object::GrpcRoute(Arc::new(o)), u)),
        Kind::ReferenceGrant => {
            typed(value, kind).map(|(o, u)| (Object::ReferenceGrant(Arc::new(o)), u))
        }
    };
    match typed {
        Ok((mut object, unknown)) => {
            for field in unknown {
                out.problems.push(Problem::new(
                    object_ref.clone(),
                    Reason::UnknownField,
                    format!("in {place}: unknown field {field} (ignored; check its spelling)"),
                ));
            }
            set_namespace(&mut object, namespace);
            out.objects.push(object);
        }
        Err(why) => {
            out.problems.push(Problem::new(
                object_ref,
                Reason::InvalidManifest,
                format!("in {place}: {why}"),
            ));
            out.invalid.push((kind, Key::new(namespace, name)));
        }
    }
}

/// Deserializes with the failing field's path in the error and the unknown fields listed.
fn typed<T: DeserializeOwned>(value: Value, kind: Kind) -> Result<(T, Vec<String>), String> {
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result: Result<T, _> = {
        let de = serde_path_to_error::Deserializer::new(value, &mut track);
        serde_ignored::deserialize(de, |path| unknown.push(field_path(&path)))
    };
    match result {
        Ok(object) => Ok((object, unknown)),
        Err(e) => {
            let path = track.path().to_string();
            let at = if path == "." || path.is_empty() {
                String::new()
            } else {
                format!(" at {path}")
            };
            if kind == Kind::Secret {
                // Never echo Secret contents into logs and problem lists.
                Err(format!("is not a valid Secret{at}"))
            } else {
                Err(format!("{e}{at}"))
            }
        }
    }
}

/// `spec.rules[0].http.paths[0].bakend`: the form users see in kubectl and in type errors.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => {
            let parent = field_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

fn set_namespace(object: &mut Object, namespace: &str) {
    let meta = match object {
        Object::Ingress(o) => &mut Arc::make_mut(o).metadata,
        Object::IngressClass(o) => {
            Arc::make_mut(o).metadata.namespace = None;
            return;
        }
        Object::Service(o) => &mut Arc::make_mut(o).metadata,
        Object::EndpointSlice(o) => &mut Arc::make_mut(o).metadata,
        Object::Endpoints(o) => &mut Arc::make_mut(o).metadata,
        Object::Secret(o) => &mut Arc::make_mut(o).metadata,
        Object::ConfigMap(o) => &mut Arc::make_mut(o).metadata,
        Object::Namespace(o) => {
            Arc::make_mut(o).metadata.namespace = None;
            return;
        }
        Object::GatewayClass(o) => {
            Arc::make_mut(o).metadata.namespace = None;
            return;
        }
        Object::Gateway(o) => &mut Arc::make_mut(o).metadata,
        Object::HttpRoute(o) => &mut Arc::make_mut(o).metadata,
        Object::GrpcRoute(o) => &mut Arc::make_mut(o).metadata,
        Object::ReferenceGrant(o) => &mut Arc::make_mut(o).metadata,
    };
    meta.namespace = Some(namespace.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Parsed {
        parse("test.yaml", text, false)
    }

    #[test]
    fn multi_document_yaml_yields_every_object_and_skips_other_kinds() {
        let p = yaml(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n\
             apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: wicket, namespace: ignored}\nspec: {controller: wicket.dev/ingress-controller}\n---\n",
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.objects.len(), 2);
        assert_eq!(p.objects[0].key(), Key::new("default", "web"));
        assert_eq!(p.objects[1].key(), Key::new("", "wicket"));
    }

    #[test]
    fn list_kinds_are_unpacked() {
        let p = yaml(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a, namespace: x}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: b}\n",
        );
        let keys: Vec<Key> = p.objects.iter().map(Object::key).collect();
        assert_eq!(keys, vec![Key::new("x", "a"), Key::new("default", "b")]);
    }

    #[test]
    fn json_files_are_read_as_json() {
        let p = parse(
            "svc.json",
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"j"}}"#,
            true,
        );
        assert_eq!(p.objects.len(), 1);
        let p = parse("svc.json", "{not json", true);
        assert!(p.unreadable);
        assert!(p.problems[0].message.contains("not valid JSON"));
    }

    #[test]
    fn broken_yaml_makes_the_file_unreadable_with_a_location() {
        let p = yaml("apiVersion: v1\nkind: Service\nmetadata: {name: [unclosed\n");
        assert!(p.unreadable);
        assert_eq!(p.problems[0].reason, Reason::InvalidManifest);
        assert!(
            p.problems[0].message.contains("line"),
            "{}",
            p.problems[0].message
        );
    }

    #[test]
    fn unknown_fields_are_reported_with_their_path_and_the_object_is_kept() {
        let p = yaml(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: a}\nspec:\n  rules:\n  - host: a.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        bakend: {}\n        backend: {service: {name: web, port: {number: 80}}}\n",
        );
        assert_eq!(p.objects.len(), 1);
        assert_eq!(p.problems.len(), 1);
        assert_eq!(p.problems[0].reason, Reason::UnknownField);
        assert!(
            p.problems[0]
                .message
                .contains("spec.rules[0].http.paths[0].bakend"),
            "{}",
            p.problems[0].message
        );
    }

    #[test]
    fn wrong_types_name_the_field_and_mark_the_object_invalid() {
        let p = yaml(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  ports:\n  - port: eighty\n",
        );
        assert!(p.objects.is_empty());
        assert_eq!(p.invalid, vec![(Kind::Service, Key::new("shop", "web"))]);
        let m = &p.problems[0].message;
        assert!(m.contains("spec.ports[0].port"), "{m}");
        assert!(m.contains("document 1"), "{m}");
    }

    #[test]
    fn secret_errors_never_echo_the_secret() {
        let p = yaml(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  tls.key: \"!!not-base64-TOPSECRET\"\n",
        );
        assert!(p.objects.is_empty());
        assert!(
            !p.problems[0].message.contains("TOPSECRET"),
            "{}",
            p.problems[0].message
        );
    }

    #[test]
    fn unsupported_api_versions_and_missing_names_are_reported() {
        let p = yaml(
            "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: old}\n---\napiVersion: v1\nkind: Service\nmetadata: {}\n---\nkind: Service\n---\n- just\n- a list\n",
        );
        assert!(p.objects.is_empty());
        let messages: Vec<&str> = p.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(messages[0].contains("use networking.k8s.io/v1"));
        assert!(messages[1].contains("no metadata.name"));
        assert!(messages[2].contains("no apiVersion or kind"));
        assert!(messages[3].contains("not an object"));
    }

    /// Random edits of a valid manifest: every outcome is objects or problems, never a panic,
    /// and translation of whatever parsed never panics either.
    #[test]
    fn mangled_manifests_never_panic() {
        let valid = include_str!("../../examples/quickstart/ingress.yaml").to_owned()
            + "---\n"
            + include_str!("../../examples/quickstart/web.yaml")
            + "---\n"
            + include_str!("../../examples/quickstart/docs.yaml");
        let mut rng = fastrand::Rng::with_seed(11);
        let pieces = [
            ":", "-", " ", "\n", "{", "[", "\"", "'", "---\n", "~", "&a", "*a", "!!binary", "0x",
            "é", "\t",
        ];
        for _ in 0..400 {
            let mut text: Vec<char> = valid.chars().collect();
            for _ in 0..rng.usize(1..6) {
                let at = rng.usize(0..text.len());
                match rng.u8(0..3) {
                    0 => {
                        text.remove(at);
                    }
                    1 => text
                        .splice(at..at, pieces[rng.usize(0..pieces.len())].chars())
                        .for_each(drop),
                    _ => {
                        let other = rng.usize(0..text.len());
                        text.swap(at, other);
                    }
                }
            }
            let text: String = text.into_iter().collect();
            let parsed = parse("fuzz.yaml", &text, false);
            let index = crate::controller::index::Index::from_objects(parsed.objects);
            let _ = crate::controller::translate::build(
                &index,
                &crate::controller::Settings::default(),
            );
        }
    }
}
