use super::*;
use weft_api::{PolicedNamespace, WeftNodePolicySpec, WeftPolicyIndexSpec};

fn policed(namespace: &str) -> WeftPolicyIndexSpec {
    WeftPolicyIndexSpec {
        namespaces: vec![PolicedNamespace {
            name: namespace.into(),
            ingress: true,
            egress: true,
        }],
    }
}

fn pod(namespace: &str, uid: &str) -> PodRef {
    PodRef {
        namespace: Some(namespace.into()),
        name: Some("a".into()),
        uid: Some(uid.into()),
    }
}

fn entry(uid: &str) -> PodPolicies {
    PodPolicies {
        namespace: "x".into(),
        name: "a".into(),
        uid: uid.into(),
        ingress: vec!["x.deny".into()],
        ..PodPolicies::default()
    }
}

fn gate(
    wait: Duration,
) -> (
    PolicyGate,
    Arc<Mutex<PolicyInputs>>,
    watch::Sender<Progress>,
) {
    let inputs = Arc::new(Mutex::new(PolicyInputs::default()));
    let (sender, receiver) = watch::channel(Progress::default());
    (
        PolicyGate::new(inputs.clone(), receiver, wait),
        inputs,
        sender,
    )
}

#[tokio::test]
async fn pods_without_identity_or_policies_pass_at_once() {
    let (gate, inputs, _sender) = gate(Duration::from_secs(5));
    let (judgement, waited) = gate.judge(&PodRef::default()).await;
    assert_eq!(judgement, Judgement::Unisolated, "cnitool: no pod identity");
    assert!(waited < Duration::from_millis(50));
    inputs.lock().unwrap().set_index(Some(policed("x")));
    inputs.lock().unwrap().set_own_listed();
    let (judgement, waited) = gate.judge(&pod("y", "u1")).await;
    assert_eq!(judgement, Judgement::Unisolated);
    assert!(waited < Duration::from_millis(50));
}

#[tokio::test]
async fn a_pod_waits_until_its_node_object_and_the_index_have_listed() {
    let (gate, inputs, sender) = gate(Duration::from_secs(5));
    inputs.lock().unwrap().set_index(Some(policed("x")));
    let listed = {
        let inputs = inputs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            inputs.lock().unwrap().set_own_listed();
            sender.send_replace(Progress::default());
            sender
        })
    };
    // The index alone says y has no policy, but the pod's entry (a family turned off)
    // may still be on its way: judged only once the node's object has listed.
    let (judgement, waited) = gate.judge(&pod("y", "u1")).await;
    assert_eq!(judgement, Judgement::Unisolated);
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    drop(listed.await);
}

#[tokio::test]
async fn a_pod_in_a_policed_namespace_waits_for_its_own_entry() {
    let (gate, inputs, sender) = gate(Duration::from_secs(5));
    inputs.lock().unwrap().set_index(Some(policed("x")));
    let arrives = {
        let inputs = inputs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(60)).await;
            // Another pod's entry first: no answer for ours yet.
            inputs.lock().unwrap().set_node(Some(WeftNodePolicySpec {
                node_name: "n".into(),
                pods: vec![entry("other")],
            }));
            sender.send_replace(Progress::default());
            tokio::time::sleep(Duration::from_millis(60)).await;
            inputs.lock().unwrap().set_node(Some(WeftNodePolicySpec {
                node_name: "n".into(),
                pods: vec![entry("other"), entry("u1")],
            }));
            sender.send_replace(Progress::default());
            sender
        })
    };
    let (judgement, waited) = gate.judge(&pod("x", "u1")).await;
    assert_eq!(judgement, Judgement::Entry(entry("u1")));
    assert!(
        waited >= Duration::from_millis(120) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(judgement.outcome(), "ready");
    drop(arrives.await.unwrap());
}

#[tokio::test]
async fn without_its_entry_in_time_a_pod_starts_isolated() {
    let (gate, inputs, _sender) = gate(Duration::from_millis(150));
    inputs.lock().unwrap().set_index(Some(policed("x")));
    let (judgement, waited) = gate.judge(&pod("x", "u1")).await;
    assert_eq!(judgement, Judgement::Pending);
    assert_eq!(judgement.outcome(), "timeout");
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    // Before every watch listed, nothing is known: the pod waits, then starts isolated.
    let (gate, _inputs, _sender) = self::gate(Duration::from_millis(50));
    assert_eq!(gate.judge(&pod("x", "u1")).await.0, Judgement::Pending);
}
