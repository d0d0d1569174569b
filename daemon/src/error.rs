//! weftd's one error type. Each variant is a kind of failure an operator tells apart,
//! and its name is the `error` label of `weft_errors_total` ([`Error::metric_label`],
//! the only place variants become labels), as kube-rs' controller-rs labels its
//! reconcile errors. Messages name the flag, file, object or kernel entry concerned.
//!
//! Imports nothing of weftd: every module may use it.

use std::path::PathBuf;

/// Something weftd could not do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, or a combination of flags, is not usable; the message names the flag.
    #[error("{0}")]
    Flag(String),
    /// The plugin's socket cannot be served; the message names `--socket` and the path.
    #[error("--socket: {0}")]
    Socket(String),
    /// A netlink request failed.
    #[error("{context}: {source}")]
    Netlink {
        /// What weftd was doing.
        context: String,
        /// The kernel's (or the socket's) answer.
        source: weft_netlink::NetlinkError,
    },
    /// The uplink is unusable (missing, or its MTU cannot carry pods).
    #[error("{0}")]
    Uplink(String),
    /// The Prometheus registry refused a metric.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A metrics endpoint cannot listen (the message names `--metrics-addr`).
    #[error("{0}")]
    Listen(String),
    /// The IPAM state cannot be opened.
    #[error("--state-dir {}: {source}", state_dir.display())]
    Ipam {
        /// The state directory.
        state_dir: PathBuf,
        /// Why.
        source: weft_ipam::IpamError,
    },
    /// A thread, the runtime or a signal handler could not be started.
    #[error("cannot start {what}: {source}")]
    Start {
        /// What was being started.
        what: &'static str,
        /// The OS's answer.
        source: std::io::Error,
    },
    /// `nft` could not be run, or refused a script.
    #[error("nftables: {0}")]
    Firewall(String),
    /// The kubeconfig or in-cluster configuration is unusable.
    #[error("{flag}: {message}")]
    Kubeconfig {
        /// `--kubeconfig PATH` or `--in-cluster`.
        flag: String,
        /// Why.
        message: String,
    },
    /// A request to the apiserver failed.
    #[error("{context}: {source}")]
    Kubernetes {
        /// What weftd was doing.
        context: String,
        /// The client's error.
        source: Box<kube::Error>,
    },
    /// A watch of the apiserver failed (it is retried with backoff).
    #[error("{context}: {source}")]
    Watch {
        /// What is watched.
        context: String,
        /// The watcher's error.
        source: Box<kube::runtime::watcher::Error>,
    },
    /// The WeftNetwork and WeftNode do not (yet) describe a usable allocation.
    #[error("{0}")]
    Allocation(String),
    /// A peer cannot be programmed (its entries would clash with another's).
    #[error("peer {peer:?}: {problem}")]
    PeerRejected {
        /// The peer's name.
        peer: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A datapath entry could not be turned into a kernel request.
    #[error("{0}")]
    Entry(String),
    /// The CNI conflist cannot be written; the message names `--cni-conflist` and the path.
    #[error("--cni-conflist {}: {problem}", path.display())]
    Conflist {
        /// Where it goes.
        path: PathBuf,
        /// What failed.
        problem: String,
    },
    /// A long-running task returned, though it should run as long as weftd.
    #[error("the {task} task ended")]
    TaskEnded {
        /// The task's name.
        task: &'static str,
    },
    /// A long-running task panicked.
    #[error("the {task} task panicked")]
    TaskPanicked {
        /// The task's name.
        task: &'static str,
    },
}

impl Error {
    /// The `error` label of `weft_errors_total`: the variant's name.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Flag(_) => "Flag",
            Error::Socket(_) => "Socket",
            Error::Netlink { .. } => "Netlink",
            Error::Uplink(_) => "Uplink",
            Error::Metrics(_) => "Metrics",
            Error::Listen(_) => "Listen",
            Error::Ipam { .. } => "Ipam",
            Error::Start { .. } => "Start",
            Error::Firewall(_) => "Firewall",
            Error::Kubeconfig { .. } => "Kubeconfig",
            Error::Kubernetes { .. } => "Kubernetes",
            Error::Watch { .. } => "Watch",
            Error::Allocation(_) => "Allocation",
            Error::PeerRejected { .. } => "PeerRejected",
            Error::Entry(_) => "Entry",
            Error::Conflist { .. } => "Conflist",
            Error::TaskEnded { .. } => "TaskEnded",
            Error::TaskPanicked { .. } => "TaskPanicked",
        }
    }

    /// A netlink failure while doing `context`.
    pub fn netlink(context: impl Into<String>) -> impl FnOnce(weft_netlink::NetlinkError) -> Error {
        let context = context.into();
        move |source| Error::Netlink { context, source }
    }

    /// An apiserver failure while doing `context`.
    pub fn kubernetes(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let context = context.into();
        move |source| Error::Kubernetes {
            context,
            source: Box::new(source),
        }
    }

    /// A failure to start `what`.
    pub fn start(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Start { what, source }
    }
}

/// weftd's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
