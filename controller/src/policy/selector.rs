//! Label selectors in normal form, and their evaluation against a label map.
//!
//! Normal form (Antrea's `GenerateNormalizedName`): `matchLabels` folded into
//! `matchExpressions` as `In` with one value, each requirement's values sorted and
//! deduplicated, the requirements sorted and deduplicated. Two selectors that select the
//! same objects by the same requirements then compare equal and print the same text,
//! which names their address group. Evaluation follows the API
//! (apimachinery `labels.Requirement.Matches`): every requirement must hold; `NotIn`
//! holds when the key is absent; an empty selector selects everything.

use super::error::{PolicyError, Problem};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;
use std::fmt;

/// Labels of a pod or namespace.
pub type Labels = BTreeMap<String, String>;

/// A selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One requirement on one label key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and deduplicated; empty for `Exists` and `DoesNotExist`.
    pub values: Vec<String>,
}

/// A normalized selector: the conjunction of its requirements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that selects everything (an empty or absent `podSelector`).
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// Normalizes `selector`; `field` is its path, for errors.
    pub fn parse(selector: &LabelSelector, field: &str) -> Result<Selector, PolicyError> {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(key, value)| Requirement {
                key: key.clone(),
                operator: Operator::In,
                values: vec![value.clone()],
            })
            .collect();
        for (i, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let at = format!("{field}.matchExpressions[{i}]");
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(PolicyError::new(
                        format!("{at}.operator"),
                        other,
                        Problem::Operator,
                    ))
                }
            };
            let mut values = expression.values.clone().unwrap_or_default();
            values.sort();
            values.dedup();
            let takes_values = matches!(operator, Operator::In | Operator::NotIn);
            if takes_values && values.is_empty() {
                return Err(PolicyError::new(
                    format!("{at}.values"),
                    "[]",
                    Problem::ValuesMissing,
                ));
            }
            if !takes_values && !values.is_empty() {
                return Err(PolicyError::new(
                    format!("{at}.values"),
                    values.join(","),
                    Problem::ValuesForbidden,
                ));
            }
            requirements.push(Requirement {
                key: expression.key.clone(),
                operator,
                values,
            });
        }
        requirements.sort();
        requirements.dedup();
        Ok(Selector { requirements })
    }

    /// Whether objects with `labels` are selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// A label pair every selected object carries (the first `In` with one value), for
    /// the inverted index: only objects with that pair can match.
    pub fn required_pair(&self) -> Option<(&str, &str)> {
        self.requirements
            .iter()
            .find_map(|r| match r.values.as_slice() {
                [value] if r.operator == Operator::In => Some((r.key.as_str(), value.as_str())),
                _ => None,
            })
    }
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// The label selector syntax of `kubectl get -l`: `k in (a,b)`, `k notin (a)`, `k`,
/// `!k`, joined by commas; empty for everything.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let values = r.values.join(",");
            match r.operator {
                Operator::In => write!(f, "{} in ({values})", r.key)?,
                Operator::NotIn => write!(f, "{} notin ({values})", r.key)?,
                Operator::Exists => write!(f, "{}", r.key)?,
                Operator::DoesNotExist => write!(f, "!{}", r.key)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "../tests/policy_selector.rs"]
mod tests;
