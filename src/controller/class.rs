//! Which Ingresses are ours: IngressClass selection.
//!
//! Our classes are the IngressClasses whose `spec.controller` is `--controller-name`.
//! The legacy `kubernetes.io/ingress.class` annotation wins over `spec.ingressClassName`;
//! an Ingress without either is ours only through a default class of ours or
//! `--watch-ingress-without-class`.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;

use super::index::Index;
use super::Settings;
use crate::model::{ObjectRef, Problem, Reason};

pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The IngressClasses as seen by one controller.
pub struct Classes<'a> {
    /// Every class by name, with its controller.
    all: BTreeMap<&'a str, &'a str>,
    /// Whether one of ours is marked as the cluster default.
    default_is_ours: bool,
    settings: &'a Settings,
}

/// The decision for one Ingress.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Ours,
    /// Not ours, and why (shown in `/debug/routes` under `ignored`).
    NotOurs(String),
}

impl<'a> Classes<'a> {
    pub fn new(index: &'a Index, settings: &'a Settings) -> Self {
        let mut all = BTreeMap::new();
        let mut default_is_ours = false;
        for class in index.classes.values() {
            let Some(name) = class.metadata.name.as_deref() else {
                continue;
            };
            let controller = class
                .spec
                .as_ref()
                .and_then(|s| s.controller.as_deref())
                .unwrap_or("");
            all.insert(name, controller);
            let is_default = class
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true");
            if is_default && controller == settings.controller_name {
                default_is_ours = true;
            }
        }
        Self {
            all,
            default_is_ours,
            settings,
        }
    }

    fn is_ours(&self, class: &str) -> bool {
        self.all
            .get(class)
            .is_some_and(|c| *c == self.settings.controller_name)
    }

    /// Decides whether `ingress` is ours; problems worth telling its author are pushed.
    pub fn decide(&self, ingress: &Ingress, problems: &mut Vec<Problem>) -> Decision {
        let meta = &ingress.metadata;
        let object = || {
            ObjectRef::new(
                "Ingress",
                meta.namespace.as_deref(),
                meta.name.as_deref().unwrap_or(""),
            )
        };
        let annotation = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(CLASS_ANNOTATION))
            .map(String::as_str);
        let field = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref());

        if let Some(value) = annotation {
            let ours = self.is_ours(value) || value == self.settings.ingress_class;
            if let Some(field) = field.filter(|f| *f != value) {
                if ours || self.is_ours(field) {
                    problems.push(Problem::new(
                        object(),
                        Reason::IngressClassConflict,
                        format!(
                            "annotation {CLASS_ANNOTATION}={value:?} and spec.ingressClassName={field:?} disagree; the annotation wins"
                        ),
                    ));
                }
            }
            return if ours {
                Decision::Ours
            } else {
                Decision::NotOurs(format!(
                    "annotation {CLASS_ANNOTATION}={value:?} names a class of another controller"
                ))
            };
        }

        if let Some(class) = field {
            return match self.all.get(class) {
                Some(controller) if *controller == self.settings.controller_name => Decision::Ours,
                Some(controller) => Decision::NotOurs(format!(
                    "IngressClass {class:?} belongs to controller {controller:?}"
                )),
                None => {
                    if class == self.settings.ingress_class {
                        // Clearly meant for us: say what is missing rather than stay silent.
                        problems.push(Problem::new(
                            object(),
                            Reason::IngressClassNotFound,
                            format!(
                                "spec.ingressClassName is {class:?} but no IngressClass {class:?} exists; create it with spec.controller: {}",
                                self.settings.controller_name
                            ),
                        ));
                    }
                    Decision::NotOurs(format!("IngressClass {class:?} does not exist"))
                }
            };
        }

        if self.default_is_ours || self.settings.watch_ingress_without_class {
            Decision::Ours
        } else {
            Decision::NotOurs(
                "no ingress class, no default IngressClass of ours, and --watch-ingress-without-class is off"
                    .to_owned(),
            )
        }
    }
}
