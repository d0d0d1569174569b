//! Truth-table cases as data: NetworkPolicy objects (computed from the model, so an
//! ipBlock can name a pod's address), applied with kubectl; the observed table must
//! reach the oracle's within a timeout, and the baseline again once they are deleted.
//! Changes during a case (labels of pods and namespaces, policy updates) are steps of
//! the same kind: a change, then the table the oracle expects after it.

use super::cluster::PolicyCluster;
use super::matrix::{compare, expected_matrix, Comparison};
use super::model::{Labels, Model, PodId};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{json, Value};
use std::fmt;
use std::time::Duration;

/// One case.
#[derive(Debug, Clone, Copy)]
pub struct PolicyCase {
    /// What it checks, in a few words.
    pub name: &'static str,
    /// Its NetworkPolicy objects.
    pub policies: fn(&Model) -> Vec<Value>,
}

/// One change and the table it had to lead to.
#[derive(Debug)]
pub struct Step {
    /// What changed.
    pub name: String,
    /// From the change's kubectl returning to the first table equal to the oracle's, or
    /// the last table's differences when the timeout passed first.
    pub result: Result<Duration, Box<Comparison>>,
}

impl Step {
    /// The table matched in time.
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }
}

impl fmt::Display for Step {
    /// One line; the grids when the table did not match.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(after) => writeln!(
                f,
                "{:<72} matched after {} ms",
                self.name,
                after.as_millis()
            ),
            Err(comparison) => writeln!(f, "{:<72} NO MATCH: {comparison}", self.name),
        }
    }
}

/// `objects` as the oracle reads them; panics naming `what` when one is not a
/// NetworkPolicy.
pub fn parse_policies(what: &str, objects: &[Value]) -> Vec<NetworkPolicy> {
    objects
        .iter()
        .map(|o| {
            serde_json::from_value(o.clone())
                .unwrap_or_else(|e| panic!("{what}: not a NetworkPolicy ({e}): {o}"))
        })
        .collect()
}

/// A NetworkPolicy object named `name` in `namespace`.
pub fn network_policy(namespace: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

/// A label to set (with a value) or to remove (without).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelChange<'a> {
    /// The label's key.
    pub key: &'a str,
    /// Its new value; `None` removes it.
    pub value: Option<&'a str>,
}

impl<'a> LabelChange<'a> {
    /// Set `key` to `value`.
    pub fn set(key: &'a str, value: &'a str) -> LabelChange<'a> {
        LabelChange {
            key,
            value: Some(value),
        }
    }

    /// Remove `key`.
    pub fn remove(key: &'a str) -> LabelChange<'a> {
        LabelChange { key, value: None }
    }

    /// As kubectl label takes it: `key=value`, or `key-` to remove.
    fn argument(self) -> String {
        match self.value {
            Some(value) => format!("{}={value}", self.key),
            None => format!("{}-", self.key),
        }
    }

    /// Makes the same change to `labels`.
    fn apply(self, labels: &mut Labels) {
        match self.value {
            Some(value) => labels.insert(self.key.to_owned(), value.to_owned()),
            None => labels.remove(self.key),
        };
    }
}

impl fmt::Display for LabelChange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(value) => write!(f, "label {}={value} set", self.key),
            None => write!(f, "label {} removed", self.key),
        }
    }
}

impl PolicyCluster {
    /// Applies the case's policies and waits up to `timeout` for the oracle's table, then
    /// deletes every NetworkPolicy and waits up to `timeout` for the baseline.
    pub fn run_case(&self, case: &PolicyCase, timeout: Duration) -> [Step; 2] {
        let objects = (case.policies)(self.model());
        let applied = self.apply_policies(case.name, &objects, timeout);
        let deleted = self.delete_policies(case.name, timeout);
        [applied, deleted]
    }

    /// `kubectl apply` of `objects` (all the policies there are from now on, the oracle
    /// assumes), then the wait for the oracle's table.
    pub fn apply_policies(&self, what: &str, objects: &[Value], timeout: Duration) -> Step {
        let policies = parse_policies(what, objects);
        self.kubectl_input(
            &["apply", "-f", "-"],
            &json!({"apiVersion": "v1", "kind": "List", "items": objects}),
        );
        self.step(format!("{what}: applied"), &policies, timeout)
    }

    /// Deletes every NetworkPolicy, then waits for the baseline.
    pub fn delete_policies(&self, what: &str, timeout: Duration) -> Step {
        self.kubectl(&["delete", "networkpolicies", "--all", "--all-namespaces"]);
        self.step(format!("{what}: deleted"), &[], timeout)
    }

    /// Changes a label of pod `id`, in the apiserver and the model, then waits for the
    /// oracle's table under `policies` (those in force).
    pub fn label_pod(
        &mut self,
        id: &PodId,
        change: LabelChange<'_>,
        policies: &[Value],
        timeout: Duration,
    ) -> Step {
        let (name, namespace) = (id.name.as_str(), id.namespace.as_str());
        let argument = change.argument();
        self.kubectl(&[
            "label",
            "pod",
            name,
            "-n",
            namespace,
            &argument,
            "--overwrite",
        ]);
        change.apply(&mut self.model_mut().pod_mut(id).unwrap().labels);
        self.step_under(format!("pod {id}: {change}"), policies, timeout)
    }

    /// [`PolicyCluster::label_pod`] for namespace `name`.
    pub fn label_namespace(
        &mut self,
        name: &str,
        change: LabelChange<'_>,
        policies: &[Value],
        timeout: Duration,
    ) -> Step {
        let argument = change.argument();
        self.kubectl(&["label", "namespace", name, &argument, "--overwrite"]);
        let namespaces = &mut self.model_mut().namespaces;
        let namespace = namespaces.iter_mut().find(|n| n.name == name).unwrap();
        change.apply(&mut namespace.labels);
        self.step_under(format!("namespace {name}: {change}"), policies, timeout)
    }

    /// [`PolicyCluster::step`] under policy objects.
    fn step_under(&self, what: String, policies: &[Value], timeout: Duration) -> Step {
        let policies = parse_policies(&what, policies);
        self.step(what, &policies, timeout)
    }

    fn step(&self, name: String, policies: &[NetworkPolicy], timeout: Duration) -> Step {
        let expected = expected_matrix(self.model(), policies);
        Step {
            name,
            result: self.wait_for_matrix(&expected, timeout),
        }
    }

    /// The observed table against the oracle's with no policy: a one-shot comparison.
    pub fn compare_baseline(&self) -> Comparison {
        compare(&self.probe_matrix(), &expected_matrix(self.model(), &[]))
    }
}
