//! Watch load, counted from the apiserver's side: the benchmark's own `kubectl get --raw
//! ...?watch=1` streams, one per watch of weftd with weftd's very selectors (for node 1),
//! and the three a watch-everything design would hold on every node (all Pods, all
//! Namespaces, all NetworkPolicies). Each stream's bytes and events (one JSON line per
//! event) are counted as they arrive; a snapshot at a phase boundary lets phases be
//! told apart.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use weft_api::span::{span_label, SPAN_ALL};
use weft_e2e::ControlPlane;

const WEFT: &str = "/apis/weft.dev/v1alpha1";

/// Which design a stream belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Design {
    Weft,
    WatchEverything,
}

/// Bytes and events of one stream so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Count {
    pub(crate) bytes: u64,
    pub(crate) events: u64,
}

impl std::ops::Sub for Count {
    type Output = Count;
    fn sub(self, o: Count) -> Count {
        Count {
            bytes: self.bytes - o.bytes,
            events: self.events - o.events,
        }
    }
}

struct Stream {
    name: String,
    design: Design,
    bytes: Arc<AtomicU64>,
    events: Arc<AtomicU64>,
    child: Child,
    reader: Option<JoinHandle<()>>,
}

/// The running streams; dropping them kills the kubectl processes.
pub(crate) struct Watches {
    streams: Vec<Stream>,
}

/// Every stream's count at one moment, in stream order.
pub(crate) type Snapshot = Vec<Count>;

impl Watches {
    /// Starts weftd's six watches for node `node` and the watch-everything three.
    pub(crate) fn start(plane: &ControlPlane, kubectl: &str, node: &str) -> Watches {
        let own = span_label(node);
        let labels = |kind: &str, label: &str| {
            format!(
                "{WEFT}/{kind}?watch=1&labelSelector={}",
                label.replace('/', "%2F")
            )
        };
        let by_name = |kind: &str, name: &str| {
            format!("{WEFT}/{kind}?watch=1&fieldSelector=metadata.name%3D{name}")
        };
        let weft = [
            ("weftpolicies (node span)", labels("weftpolicies", &own)),
            ("weftpolicies (span all)", labels("weftpolicies", SPAN_ALL)),
            (
                "weftaddressgroups (node span)",
                labels("weftaddressgroups", &own),
            ),
            (
                "weftaddressgroups (span all)",
                labels("weftaddressgroups", SPAN_ALL),
            ),
            ("weftnodepolicies (own)", by_name("weftnodepolicies", node)),
            (
                "weftpolicyindexes (default)",
                by_name("weftpolicyindexes", "default"),
            ),
        ];
        let everything = [
            ("pods", "/api/v1/pods?watch=1".to_owned()),
            ("namespaces", "/api/v1/namespaces?watch=1".to_owned()),
            (
                "networkpolicies",
                "/apis/networking.k8s.io/v1/networkpolicies?watch=1".to_owned(),
            ),
        ];
        let streams = weft
            .into_iter()
            .map(|(n, p)| (n, p, Design::Weft))
            .chain(
                everything
                    .into_iter()
                    .map(|(n, p)| (n, p, Design::WatchEverything)),
            )
            .map(|(name, path, design)| Stream::start(plane, kubectl, name, &path, design))
            .collect();
        Watches { streams }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        self.streams
            .iter()
            .map(|s| Count {
                bytes: s.bytes.load(Ordering::Relaxed),
                events: s.events.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// (name, design) of each stream, in snapshot order.
    pub(crate) fn names(&self) -> Vec<(String, Design)> {
        self.streams
            .iter()
            .map(|s| (s.name.clone(), s.design))
            .collect()
    }
}

impl Stream {
    fn start(
        plane: &ControlPlane,
        kubectl: &str,
        name: &str,
        path: &str,
        design: Design,
    ) -> Stream {
        let mut child = Command::new("ip")
            .args(["netns", "exec", plane.netns_name(), kubectl])
            .arg(format!("--kubeconfig={}", plane.kubeconfig().display()))
            .args(["get", "--raw", path])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let bytes = Arc::new(AtomicU64::new(0));
        let events = Arc::new(AtomicU64::new(0));
        let mut stdout = child.stdout.take().unwrap();
        let (b, e) = (Arc::clone(&bytes), Arc::clone(&events));
        let reader = std::thread::spawn(move || {
            let mut buffer = vec![0u8; 64 << 10];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                b.fetch_add(n as u64, Ordering::Relaxed);
                let lines = buffer[..n].iter().filter(|&&c| c == b'\n').count();
                e.fetch_add(lines as u64, Ordering::Relaxed);
            }
        });
        Stream {
            name: name.to_owned(),
            design,
            bytes,
            events,
            child,
            reader: Some(reader),
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
