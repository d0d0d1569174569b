//! What can be wrong in a NetworkPolicy as the controller reads it: each error names the
//! field (as a path into the object) and its value, so the Event the reconciler emits
//! tells the author what to fix. Imports nothing of this crate.

/// A part of a NetworkPolicy the controller cannot compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: '{value}' {problem}")]
pub struct PolicyError {
    /// Path of the field, e.g. `spec.ingress[0].from[1].ipBlock.cidr`.
    pub field: String,
    /// The value found there.
    pub value: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// The kinds of problem, each worded to follow the quoted value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("is not a protocol (TCP, UDP or SCTP)")]
    Protocol,
    #[error("is not a policy type (Ingress or Egress)")]
    PolicyType,
    #[error("is not a selector operator (In, NotIn, Exists or DoesNotExist)")]
    Operator,
    #[error("needs at least one value with In and NotIn")]
    ValuesMissing,
    #[error("takes no values with Exists and DoesNotExist")]
    ValuesForbidden,
    #[error("is not a CIDR")]
    Cidr,
    #[error("is not strictly inside the ipBlock's cidr")]
    ExceptOutside,
    #[error("is not a port (1 to 65535)")]
    Port,
    #[error("is not a port name")]
    PortName,
    #[error("needs a numeric port at or below it")]
    EndPort,
    #[error("names no podSelector, namespaceSelector or ipBlock")]
    EmptyPeer,
    #[error("combines ipBlock with a selector")]
    MixedPeer,
}

impl PolicyError {
    pub fn new(field: impl Into<String>, value: impl ToString, problem: Problem) -> PolicyError {
        PolicyError {
            field: field.into(),
            value: value.to_string(),
            problem,
        }
    }
}
