//! The status wicket computes for the Gateway API objects it serves: the conditions the
//! spec defines, per object, per listener and per route parent. Plain data: the cluster
//! writer turns it into status patches, `/debug/routes` and `wicket check` show it (in
//! manifests mode, where there is no API server, that is the only place it appears).

use serde::Serialize;

use super::problem::ObjectRef;

/// `True`, `False` or `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One condition: its type (`Accepted`, `Programmed`, `ResolvedRefs`, ...), status, and
/// the spec's reason, with a message in words.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub status: ConditionStatus,
    pub reason: &'static str,
    pub message: String,
}

impl Condition {
    pub fn new(
        type_: &'static str,
        status: ConditionStatus,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }

    pub fn yes(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(type_, ConditionStatus::True, reason, message)
    }

    pub fn no(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(type_, ConditionStatus::False, reason, message)
    }
}

/// A listener's status on its Gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    pub name: String,
    /// Route kinds the listener takes (group/kind).
    pub supported_kinds: Vec<String>,
    /// Routes Accepted on the listener.
    pub attached_routes: u32,
    pub conditions: Vec<Condition>,
}

/// A route's parentRef, as its status entry names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentStatus {
    pub parent_ref: ParentRef,
    pub conditions: Vec<Condition>,
}

/// The status of one GatewayClass, Gateway or route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    pub object: ObjectRef,
    /// `metadata.generation` the status was computed for (`observedGeneration`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Gateways: the addresses it is reachable at.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
    /// Routes: one entry per parentRef to a Gateway of ours.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<ParentStatus>,
}

impl ObjectStatus {
    pub fn new(object: ObjectRef, observed_generation: Option<i64>) -> Self {
        Self {
            object,
            observed_generation,
            conditions: Vec::new(),
            addresses: Vec::new(),
            listeners: Vec::new(),
            parents: Vec::new(),
        }
    }

    /// The condition of this type, on the object itself.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}
