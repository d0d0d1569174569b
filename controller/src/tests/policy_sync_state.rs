//! The policy writer's decisions against an apiserver kept as a map: the first leader
//! writes everything once, deltas write only what they change, a new leader listing the
//! result writes nothing (wide spans included), and a node policy waits for its Node.
use super::*;
use crate::policy::{Key, Labels, Model, PolicyPod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{json, Value};
use weft_api::span::{span_label, SPAN_ALL};

/// The objects as an apiserver would keep them: the applied bodies, with versions.
#[derive(Default)]
struct Server {
    objects: BTreeMap<ObjectId, (Value, u64)>,
    version: u64,
}

impl Server {
    /// Carries out `ops` and tells `state`; returns how many there were.
    fn run(&mut self, state: &mut State, ops: Vec<Op>) -> usize {
        let count = ops.len();
        for op in ops {
            match op {
                Op::Apply(id, rendered) => {
                    self.version += 1;
                    let body = rendered.apply_body(id.kind, &id.name);
                    self.objects.insert(id.clone(), (body, self.version));
                    let version = self.version.to_string();
                    state.wrote(&id, Some(Stored { rendered, version }));
                }
                Op::Delete(id) => {
                    self.objects.remove(&id);
                    state.wrote(&id, None);
                }
            }
        }
        count
    }

    fn listed(&self) -> Listed {
        let mut listed = Listed::default();
        for (id, (body, version)) in &self.objects {
            let meta = &body["metadata"];
            let labels: BTreeMap<String, String> =
                serde_json::from_value(meta["labels"].clone()).unwrap_or_default();
            let owners: Vec<OwnerReference> =
                serde_json::from_value(meta["ownerReferences"].clone()).unwrap_or_default();
            let spec = body["spec"].clone();
            if id.kind == Kind::Slice {
                let slice = serde_json::from_value(spec.clone()).unwrap();
                listed.slices.insert(id.name.clone(), slice);
            }
            let stored = Stored {
                rendered: Rendered::of_listed(&labels, &owners, spec),
                version: version.to_string(),
            };
            listed.objects.insert(id.clone(), stored);
        }
        listed
    }

    fn names(&self, kind: Kind) -> Vec<String> {
        let ids = self.objects.keys().filter(|id| id.kind == kind);
        ids.map(|id| id.name.clone()).collect()
    }

    fn get(&self, kind: Kind, name: &str) -> &Value {
        &self.objects[&ObjectId::new(kind, name)].0
    }
}

fn node_uid(name: &str) -> Option<String> {
    Some(format!("uid-{name}"))
}

fn pod(name: &str, app: &str, node: &str, host: u32) -> PolicyPod {
    PolicyPod {
        namespace: "x".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        labels: Labels::from([("app".to_owned(), app.to_owned())]),
        node: Some(node.into()),
        phase: Some("Running".into()),
        ips: vec![format!("2001:db8::{host:x}")],
        ..PolicyPod::default()
    }
}

/// web pods take ingress from db pods of their namespace only.
fn policy() -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"namespace": "x", "name": "web", "uid": "p1", "generation": 1},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "db"}}}]}],
        },
    }))
    .unwrap()
}

/// The model every leader computes: 130 web pods on as many nodes (a wide span) and
/// 130 db pods on node-db (two slices).
fn inputs(model: &mut Model) -> Delta {
    let mut delta = model.upsert_namespace("x", Labels::new());
    delta.merge(model.upsert_policy(&policy()).unwrap());
    for i in 0..130 {
        delta.merge(model.upsert_pod(pod(&format!("web-{i}"), "web", &format!("n{i}"), i)));
        let db = pod(&format!("db-{i}"), "db", "node-db", 1000 + i);
        delta.merge(model.upsert_pod(db));
    }
    delta
}

#[test]
fn a_new_leader_with_the_same_inputs_writes_nothing() {
    let mut model = Model::new();
    inputs(&mut model);
    let mut server = Server::default();
    let (mut state, touched) = State::new(model.snapshot(), Listed::default());
    let (ops, waiting) = state.ops(&touched, node_uid);
    assert!(waiting.is_empty());
    // The index, the policy, two slices of db pods, 131 node policies (node-db's lists
    // its pods with no policy: every pod of a policed namespace has an entry).
    assert_eq!(server.run(&mut state, ops), 1 + 1 + 2 + 131);
    let policy = server.get(Kind::Policy, "x.web");
    assert_eq!(policy["metadata"]["labels"], json!({SPAN_ALL: ""}));
    assert_eq!(policy["spec"]["source"]["name"], "web");
    let slices = server.names(Kind::Slice);
    assert_eq!(slices.len(), 2, "{slices:?}");
    let slice = server.get(Kind::Slice, &slices[0]);
    assert_eq!(slice["spec"]["members"].as_array().unwrap().len(), 100);
    // The db group spans the web pods' nodes: wide as well.
    assert_eq!(slice["metadata"]["labels"], json!({SPAN_ALL: ""}));
    let n0 = server.get(Kind::Node, "n0");
    assert_eq!(n0["metadata"]["ownerReferences"][0]["uid"], "uid-n0");
    assert_eq!(n0["spec"]["pods"][0]["uid"], "uid-web-0");
    assert_eq!(n0["spec"]["pods"][0]["ingress"], json!(["x.web"]));
    let index = server.get(Kind::Index, "default");
    assert_eq!(
        index["spec"]["namespaces"],
        json!([{"name": "x", "ingress": true, "egress": false}])
    );

    // 30 web pods go: the span shrinks to 100 nodes, above the return mark, so the
    // labels stay wide; 30 node policies are deleted, nothing else is written.
    let mut delta = Delta::default();
    for i in 100..130 {
        delta.merge(model.delete_pod(&Key::new("x", format!("web-{i}"))));
    }
    let touched = state.apply(&delta);
    let (ops, _) = state.ops(&touched, node_uid);
    assert!(
        ops.iter()
            .all(|op| matches!(op, Op::Delete(id) if id.kind == Kind::Node)),
        "{ops:?}"
    );
    assert_eq!(server.run(&mut state, ops), 30);

    // A new leader: a model built from the same objects, what the server lists.
    let mut again = Model::new();
    inputs(&mut again);
    for i in 100..130 {
        again.delete_pod(&Key::new("x", format!("web-{i}")));
    }
    let (fresh, touched) = State::new(again.snapshot(), server.listed());
    let (ops, waiting) = fresh.ops(&touched, node_uid);
    assert_eq!(ops, Vec::new());
    assert!(waiting.is_empty());
}

#[test]
fn deltas_write_only_what_they_change_and_labels_follow_the_span() {
    let mut model = Model::new();
    model.upsert_namespace("x", Labels::new());
    model.upsert_policy(&policy()).unwrap();
    model.upsert_pod(pod("web-0", "web", "n0", 1));
    model.upsert_pod(pod("db-0", "db", "n1", 2));
    let mut server = Server::default();
    let (mut state, touched) = State::new(model.snapshot(), Listed::default());
    let (ops, _) = state.ops(&touched, node_uid);
    server.run(&mut state, ops);
    let labels = json!({span_label("n0"): ""});
    assert_eq!(
        server.get(Kind::Policy, "x.web")["metadata"]["labels"],
        labels
    );

    // A second web pod on n2: the policy's labels and n2's node policy; the slice
    // (db members) is untouched.
    let delta = model.upsert_pod(pod("web-1", "web", "n2", 3));
    let touched = state.apply(&delta);
    let (ops, _) = state.ops(&touched, node_uid);
    let ids: Vec<String> = ops.iter().map(|op| op.id().to_string()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    server.run(&mut state, ops);
    let labels = json!({span_label("n0"): "", span_label("n2"): ""});
    assert_eq!(
        server.get(Kind::Policy, "x.web")["metadata"]["labels"],
        labels
    );

    // db-0 relabelled: it leaves the group, whose only slice is deleted.
    let mut db = pod("db-0", "db", "n1", 2);
    db.labels.insert("app".into(), "cache".into());
    let touched = state.apply(&model.upsert_pod(db));
    let (ops, _) = state.ops(&touched, node_uid);
    assert!(
        matches!(&ops[..], [Op::Delete(id)] if id.kind == Kind::Slice),
        "{ops:?}"
    );
    server.run(&mut state, ops);

    // The policy deleted: its object, its node policies, and the index entry.
    let touched = state.apply(&model.delete_policy(&Key::new("x", "web")));
    let (ops, _) = state.ops(&touched, node_uid);
    server.run(&mut state, ops);
    assert_eq!(server.names(Kind::Policy), Vec::<String>::new());
    assert_eq!(server.names(Kind::Node), Vec::<String>::new());
    assert_eq!(
        server.get(Kind::Index, "default")["spec"]["namespaces"],
        json!([])
    );
}

#[test]
fn a_node_policy_waits_for_its_node() {
    let mut model = Model::new();
    model.upsert_namespace("x", Labels::new());
    model.upsert_policy(&policy()).unwrap();
    model.upsert_pod(pod("web-0", "web", "n0", 1));
    let (state, touched) = State::new(model.snapshot(), Listed::default());
    let (ops, waiting) = state.ops(&touched, |_| None);
    assert_eq!(waiting, BTreeSet::from([ObjectId::new(Kind::Node, "n0")]));
    assert!(ops.iter().all(|op| op.id().kind != Kind::Node));
}
