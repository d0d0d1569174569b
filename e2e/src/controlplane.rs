//! A real Kubernetes control plane for tests and the demo: etcd and kube-apiserver, the
//! pinned builds that e2e/setup.sh makes (e2e/controlplane/), started inside a network
//! namespace and serving HTTPS on an address of that namespace, so that namespace nodes
//! reach the apiserver over the underlay like real nodes do. What controller-runtime's
//! envtest does, in the harness's style: everything an instance needs (CA, serving
//! certificate, service-account key, admin client certificate and kubeconfig, etcd's data)
//! is generated into its own directory on /dev/shm, and dropping the instance kills both
//! processes and removes the directory, also when a test panics. Instances are unique per
//! process and counter, so tests run in parallel (one control plane per namespace).
//!
//! Certificates come from the `openssl` command (EC P-256, four runs, a few milliseconds).
//! etcd listens on 127.0.0.1 inside the namespace, without fsync (tmpfs, tests only).

use crate::netns::spawn_logged;
use crate::{tools_bin, Netns};
use serde_json::Value;
use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The apiserver's secure port.
pub const APISERVER_PORT: u16 = 6443;
/// Service ClusterIP range when the advertise address is IPv6 (a documentation prefix;
/// it only exists in the apiserver's bookkeeping).
pub const SERVICE_RANGE_V6: &str = "2001:db8:fffe::/112";
/// Service ClusterIP range when the advertise address is IPv4.
pub const SERVICE_RANGE_V4: &str = "10.96.0.0/12";

/// Where instance directories live (tmpfs: etcd's writes cost nothing).
const RUN_ROOT: &str = "/dev/shm";
/// Instance directory names: `weft-cp-<test process id>-<counter>`.
const DIR_PREFIX: &str = "weft-cp-";
/// How long `start` and `start_apiserver` wait for /readyz.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The pinned control-plane binaries that e2e/setup.sh builds.
#[derive(Debug, Clone)]
pub struct KubeBinaries {
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// etcd.
    pub etcd: PathBuf,
    /// kubectl (same version as the apiserver).
    pub kubectl: PathBuf,
    /// kube-controller-manager (same version), when built: only the controller
    /// benchmark's anchor (node IPAM) runs it.
    pub kube_controller_manager: Option<PathBuf>,
}

impl KubeBinaries {
    /// Each from its variable (`KUBE_APISERVER`, `ETCD`, `KUBECTL`,
    /// `KUBE_CONTROLLER_MANAGER`), else from the directory `WEFT_KUBE_BIN`, else from the
    /// tools directory (`WEFT_TOOLS_BIN`, default ~/.cache/weft/tools/bin); panics naming
    /// e2e/setup.sh when one is missing (kube-controller-manager is optional).
    pub fn find() -> KubeBinaries {
        let dir = std::env::var_os("WEFT_KUBE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(tools_bin);
        let locate = |var: &str, name: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.join(name))
        };
        let pick = |var: &str, name: &str| {
            let path = locate(var, name);
            assert!(
                path.is_file(),
                "{} is missing: run e2e/setup.sh (it builds the pinned control plane)",
                path.display()
            );
            path
        };
        KubeBinaries {
            kube_apiserver: pick("KUBE_APISERVER", "kube-apiserver"),
            etcd: pick("ETCD", "etcd"),
            kubectl: pick("KUBECTL", "kubectl"),
            kube_controller_manager: Some(locate(
                "KUBE_CONTROLLER_MANAGER",
                "kube-controller-manager",
            ))
            .filter(|p| p.is_file()),
        }
    }
}

/// A running etcd and kube-apiserver inside one network namespace.
#[derive(Debug)]
pub struct ControlPlane {
    netns: String,
    advertise: IpAddr,
    server: String,
    dir: PathBuf,
    bins: KubeBinaries,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    startup: Duration,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver inside `netns`, the apiserver serving on
    /// `advertise`:6443 (an address already configured in `netns`), and waits until
    /// /readyz answers ok. Panics with both logs when the control plane does not come up.
    /// Drop the control plane before its namespace.
    pub fn start(netns: &Netns, advertise: IpAddr) -> ControlPlane {
        let began = Instant::now();
        sweep_stale();
        let bins = KubeBinaries::find();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = Path::new(RUN_ROOT).join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("pki")).unwrap();
        let mut cp = ControlPlane {
            netns: netns.name().to_owned(),
            advertise,
            server: format!("https://{}", SocketAddr::new(advertise, APISERVER_PORT)),
            dir,
            bins,
            etcd: None,
            apiserver: None,
            startup: Duration::ZERO,
        };
        // From here on, a panic drops `cp`, which kills what started and removes the dir.
        cp.generate_pki();
        let admin = cp.kubeconfig();
        cp.write_kubeconfig(&admin, "admin", &["system:masters"]);
        wait_for_address(netns, advertise);
        cp.etcd = Some(cp.spawn("etcd", &cp.bins.etcd, &cp.etcd_args()));
        cp.apiserver = Some(cp.spawn(
            "kube-apiserver",
            &cp.bins.kube_apiserver,
            &cp.apiserver_args(),
        ));
        cp.write_pids();
        cp.wait_ready();
        cp.startup = began.elapsed();
        cp
    }

    /// The apiserver's URL, e.g. `https://[2001:db8:ffff::2]:6443`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The address the apiserver serves on.
    pub fn advertise(&self) -> IpAddr {
        self.advertise
    }

    /// The admin kubeconfig (user `admin` in `system:masters`, certificates embedded).
    /// It works from any namespace that reaches `server()`.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// The cluster CA certificate (PEM).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// A kubeconfig (DIR/USER.token.kubeconfig) that authenticates with `token`, e.g. a
    /// ServiceAccount's from `kubectl create token`: requests as that account.
    pub fn token_kubeconfig(&self, user: &str, token: &str) -> PathBuf {
        let path = self.dir.join(format!("{user}.token.kubeconfig"));
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "weft",
            "clusters": [{"name": "weft", "cluster": {"server": self.server(),
                "certificate-authority": self.ca_cert()}}],
            "users": [{"name": user, "user": {"token": token.trim()}}],
            "contexts": [{"name": "weft", "context": {"cluster": "weft", "user": user}}],
        });
        fs::write(&path, kubeconfig.to_string()).expect("write a token kubeconfig");
        path
    }

    /// The instance directory (certificates, kubeconfigs, etcd data, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The namespace the control plane runs in.
    pub fn netns_name(&self) -> &str {
        &self.netns
    }

    /// How long `start` took, from nothing to /readyz ok.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Writes a kubeconfig for `server()` with a new client certificate for `user` in
    /// `groups` (e.g. `system:node:n1` in `system:nodes`), all data embedded, for
    /// processes in other namespaces that reach the apiserver over the underlay (weftd
    /// `--kubeconfig`). What the identity may do is up to RBAC.
    pub fn write_kubeconfig(&self, path: &Path, user: &str, groups: &[&str]) {
        let pki = self.dir.join("pki");
        let tag = format!("client-{}", COUNTER_CERTS.fetch_add(1, Ordering::Relaxed));
        let subject: String = groups
            .iter()
            .map(|g| format!("/O={}", escape_dn(g)))
            .chain([format!("/CN={}", escape_dn(user))])
            .collect();
        let (crt, key) = (
            pki.join(format!("{tag}.crt")),
            pki.join(format!("{tag}.key")),
        );
        self.openssl_cert(&subject, "client", None, &crt, &key);
        let read = |p: &Path| base64(&fs::read(p).unwrap());
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: weft\n  cluster:\n    \
             server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user:?}\n  \
             user:\n    client-certificate-data: {crt}\n    client-key-data: {key}\n\
             contexts:\n- name: weft\n  context:\n    cluster: weft\n    user: {user:?}\n\
             current-context: weft\n",
            server = self.server,
            ca = read(&self.ca_cert()),
            crt = read(&crt),
            key = read(&key),
        );
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, kubeconfig).unwrap();
    }

    /// A serving certificate and key signed by the cluster CA for `sans`
    /// (`IP:…,DNS:…`), written as DIR/pki/NAME.crt and NAME.key; their paths.
    pub fn write_serving_cert(&self, name: &str, sans: &str) -> (PathBuf, PathBuf) {
        let pki = self.dir.join("pki");
        let (crt, key) = (
            pki.join(format!("{name}.crt")),
            pki.join(format!("{name}.key")),
        );
        self.openssl_cert(&format!("/CN={name}"), "serving", Some(sans), &crt, &key);
        (crt, key)
    }

    /// kubectl with the admin kubeconfig, inside the control plane's namespace; the
    /// output whatever the status.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(&self.netns, &self.kubeconfig(), args)
            .output()
            .expect("kubectl runs")
    }

    /// Merge-patches the status subresource of `kind` `name` (in `namespace`, when
    /// namespaced) with `status`, as kubelet and weftd write theirs; asserts success.
    pub fn patch_status(&self, kind: &str, namespace: Option<&str>, name: &str, status: &Value) {
        let body = serde_json::json!({ "status": status }).to_string();
        let mut args = vec!["patch", kind, name];
        if let Some(namespace) = namespace {
            args.extend(["-n", namespace]);
        }
        args.extend(["--subresource=status", "--type=merge", "-p", body.as_str()]);
        self.kubectl_ok(&args);
    }

    /// The identity holding weft-controller's Lease (`kube-system/weft-controller`);
    /// empty when none does.
    pub fn lease_holder(&self) -> String {
        let out = self.kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "weft-controller",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl inside the control plane's namespace, asserting success; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        checked(self.kubectl(args), args)
    }

    /// Installs weft's CRDs (checked in under crates/api/crds) and waits until the
    /// apiserver serves them.
    pub fn install_weft_crds(&self) {
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/api/crds");
        self.kubectl_ok(&["apply", "--server-side", "-f", &crds.display().to_string()]);
        self.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/weftnetworks.weft.dev",
            "crd/weftnodes.weft.dev",
            "crd/weftclaimblocks.weft.dev",
            "crd/weftpolicies.weft.dev",
            "crd/weftaddressgroups.weft.dev",
            "crd/weftnodepolicies.weft.dev",
            "crd/weftpolicyindexes.weft.dev",
        ]);
    }

    /// kubectl with `input` on its standard input (`apply -f -`, `create -f -`).
    pub fn kubectl_input(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd(&self.netns, &self.kubeconfig(), args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_owned();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().unwrap();
        let _ = writer.join();
        out
    }

    /// [`ControlPlane::kubectl_input`], asserting success; its stdout.
    pub fn kubectl_input_ok(&self, args: &[&str], input: &str) -> String {
        checked(self.kubectl_input(args, input), args)
    }

    /// kubectl inside another namespace with any kubeconfig (say one from
    /// `write_kubeconfig`), reaching the apiserver over the network; output whatever the
    /// status.
    pub fn kubectl_from(&self, netns: &Netns, kubeconfig: &Path, args: &[&str]) -> Output {
        self.kubectl_cmd(netns.name(), kubeconfig, args)
            .output()
            .expect("kubectl runs")
    }

    /// True when /readyz answers ok now.
    pub fn ready(&self) -> bool {
        self.kubectl(&["--request-timeout=5s", "get", "--raw", "/readyz"])
            .status
            .success()
    }

    /// Stops kube-apiserver (SIGTERM, SIGKILL after 15 s); etcd keeps running with the
    /// data. No-op when already stopped.
    pub fn stop_apiserver(&mut self) {
        if let Some(mut child) = self.apiserver.take() {
            terminate(&mut child, Duration::from_secs(15));
        }
        self.write_pids();
    }

    /// Starts kube-apiserver again on the same etcd, certificates and address, and waits
    /// for /readyz. No-op when running.
    pub fn start_apiserver(&mut self) {
        if self.apiserver.is_some() {
            return;
        }
        self.apiserver = Some(self.spawn(
            "kube-apiserver",
            &self.bins.kube_apiserver,
            &self.apiserver_args(),
        ));
        self.write_pids();
        self.wait_ready();
    }

    /// True while kube-apiserver runs (not stopped by `stop_apiserver`).
    pub fn apiserver_running(&self) -> bool {
        self.apiserver.is_some()
    }

    /// The last `lines` lines of a log: `"etcd"` or `"kube-apiserver"`.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        crate::log_tail(self.dir.join(format!("{name}.log")), lines)
    }
}

static COUNTER_CERTS: AtomicU32 = AtomicU32::new(0);

impl ControlPlane {
    fn etcd_args(&self) -> Vec<String> {
        let data = self.dir.join("etcd");
        [
            "--name=weft".to_owned(),
            format!("--data-dir={}", data.display()),
            "--listen-client-urls=http://127.0.0.1:2379".into(),
            "--advertise-client-urls=http://127.0.0.1:2379".into(),
            "--listen-peer-urls=http://127.0.0.1:2380".into(),
            "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
            "--initial-cluster=weft=http://127.0.0.1:2380".into(),
            "--initial-cluster-state=new".into(),
            // tmpfs, throwaway data: fsync buys nothing and costs latency.
            "--unsafe-no-fsync".into(),
            // 1 GiB: room for the 5,000-node benchmark, far below /dev/shm.
            "--quota-backend-bytes=1073741824".into(),
            "--log-level=warn".into(),
        ]
        .into()
    }

    fn apiserver_args(&self) -> Vec<String> {
        let pki = self.dir.join("pki");
        let p = |name: &str| pki.join(name).display().to_string();
        let range = if self.advertise.is_ipv6() {
            SERVICE_RANGE_V6
        } else {
            SERVICE_RANGE_V4
        };
        [
            format!("--advertise-address={}", self.advertise),
            format!("--bind-address={}", self.advertise),
            format!("--secure-port={APISERVER_PORT}"),
            "--etcd-servers=http://127.0.0.1:2379".to_owned(),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", p("sa.key")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            format!("--service-cluster-ip-range={range}"),
            "--authorization-mode=RBAC".into(),
            "--allow-privileged=true".into(),
            // No controller-manager creates the `default` service accounts.
            "--disable-admission-plugins=ServiceAccount".into(),
            // Lean: the watch cache stays on (the default); no audit log, and no
            // profiling unless WEFT_APISERVER_PROFILING=1 asks for /debug/pprof (to
            // see where the apiserver's CPU goes under a benchmark).
            format!(
                "--profiling={}",
                std::env::var("WEFT_APISERVER_PROFILING").is_ok_and(|v| v == "1")
            ),
            "--v=0".into(),
        ]
        .into()
    }

    fn spawn(&self, name: &str, binary: &Path, args: &[String]) -> Child {
        // `ip netns exec` execs the binary: the child's PID is the server's.
        spawn_logged(
            &self.netns,
            binary,
            args,
            &self.dir.join(format!("{name}.log")),
        )
    }

    /// Records the PIDs, so a later run can end them if this process dies without Drop.
    fn write_pids(&self) {
        let pids: String = [&self.etcd, &self.apiserver]
            .into_iter()
            .flatten()
            .map(|c| format!("{}\n", c.id()))
            .collect();
        fs::write(self.dir.join("pids"), pids).unwrap();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = [
                ("etcd", &mut self.etcd),
                ("kube-apiserver", &mut self.apiserver),
            ]
            .into_iter()
            .find_map(|(name, child)| {
                let status = child.as_mut()?.try_wait().ok()??;
                *child = None;
                Some((name, status))
            });
            if let Some((name, status)) = exited {
                panic!(
                    "{name} exited ({status}) in {}\n{}",
                    self.netns,
                    self.logs()
                );
            }
            if self.ready() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the apiserver at {} is not ready after {READY_TIMEOUT:?}\n{}",
                self.server,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- etcd log (tail) ---\n{}\n--- kube-apiserver log (tail) ---\n{}",
            self.log_tail("etcd", 30),
            self.log_tail("kube-apiserver", 60)
        )
    }

    fn kubectl_cmd(&self, netns: &str, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns])
            .arg(&self.bins.kubectl)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            // Per instance: parallel tests' apiservers may share one address in different
            // namespaces, and kubectl keys its discovery cache by host:port.
            .arg(format!(
                "--cache-dir={}",
                self.dir.join("kubectl-cache").display()
            ))
            .args(args);
        cmd
    }

    /// CA, serving certificate, service-account key and the admin client certificate.
    fn generate_pki(&self) {
        let pki = self.dir.join("pki");
        fs::write(pki.join("openssl.cnf"), OPENSSL_CNF).unwrap();
        self.openssl(&[
            "req",
            "-x509",
            "-subj",
            "/CN=weft-test-ca",
            "-extensions",
            "ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        let mut sans = format!("IP:{},IP:127.0.0.1,IP:::1", self.advertise);
        // The first address of the service range: in-cluster clients use it.
        sans.push_str(if self.advertise.is_ipv6() {
            ",IP:2001:db8:fffe::1"
        } else {
            ",IP:10.96.0.1"
        });
        for dns in [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ] {
            let _ = write!(sans, ",DNS:{dns}");
        }
        self.openssl_cert(
            "/CN=kube-apiserver",
            "serving",
            Some(&sans),
            &pki.join("apiserver.crt"),
            &pki.join("apiserver.key"),
        );
        // SEC1 ("EC PRIVATE KEY"): the apiserver reads the public half from it too.
        self.openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "sa.key",
        ]);
    }

    /// A key and a certificate signed by the CA, with the extensions of `section`.
    fn openssl_cert(
        &self,
        subject: &str,
        section: &str,
        sans: Option<&str>,
        crt: &Path,
        key: &Path,
    ) {
        let (crt, key) = (crt.display().to_string(), key.display().to_string());
        let san = sans.map(|s| format!("subjectAltName={s}"));
        let mut args = vec![
            "req",
            "-x509",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-subj",
            subject,
            "-extensions",
            section,
            "-keyout",
            &key,
            "-out",
            &crt,
        ];
        if let Some(san) = &san {
            args.extend(["-addext", san]);
        }
        self.openssl(&args);
    }

    /// Runs openssl in the pki directory; `req` gets the common options (config, new
    /// P-256 key, no passphrase, ten years).
    fn openssl(&self, args: &[&str]) {
        let mut cmd = Command::new("openssl");
        cmd.current_dir(self.dir.join("pki")).arg(args[0]);
        if args[0] == "req" {
            cmd.args([
                "-config",
                "openssl.cnf",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "3650",
            ]);
        }
        let out = cmd.args(&args[1..]).output().expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Extension sections for `openssl req -x509`; `-subj` gives every subject.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[serving]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
";

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in [self.apiserver.take(), self.etcd.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn checked(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// SIGTERM, then SIGKILL when it has not exited within `grace`.
fn terminate(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until `addr` is configured in `netns` and usable (IPv6: DAD done), so the
/// apiserver can bind it.
fn wait_for_address(netns: &Netns, addr: IpAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = netns.ip(&["-o", "addr", "show", "to", &addr.to_string()]);
        if !shown.trim().is_empty() && !shown.contains("tentative") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} is not a usable address in namespace {}: {shown:?}",
            netns.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ends what an earlier test process left behind when it died without dropping its
/// control planes (SIGKILL, abort): for each instance directory whose owner process is
/// gone, the recorded PIDs that still run a binary with that directory on its command
/// line are killed, and the directory is removed.
fn sweep_stale() {
    let Ok(entries) = fs::read_dir(RUN_ROOT) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let dir = entry.path();
        let pids = fs::read_to_string(dir.join("pids")).unwrap_or_default();
        for pid in pids.lines() {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Escapes the characters `openssl -subj` treats specially.
fn escape_dn(value: &str) -> String {
    value.replace('\\', "\\\\").replace('/', "\\/")
}

/// Standard base64 with padding (kubeconfig `*-data` fields).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Where a control plane serves when nodes reach it over [`node_beside`] links.
pub const SOLO_APISERVER: &str = "2001:db8:ffff::2";
/// A [`node_beside`] node's uplink address, and the control plane's end of the link.
pub const SOLO_NODE_V6: &str = "2001:db8:fffe::10";
const SOLO_LINK_V6: &str = "2001:db8:fffe::1";

/// A node namespace whose `uplink` is a veth into the control plane's namespace (served
/// by [`serving_namespace`] on [`SOLO_APISERVER`]): no fabric, one node at a time (the
/// control plane's end of every link has the same address). Dropping the node's
/// namespace removes the link.
pub fn node_beside(cp_ns: &Netns, tag: &str) -> Netns {
    let ns = Netns::new(tag);
    let far = format!("k{}", &ns.name()[ns.name().len().saturating_sub(12)..]);
    ns.ip(&[
        "link", "add", "uplink", "type", "veth", "peer", "name", &far,
    ]);
    ns.ip(&["link", "set", &far, "netns", cp_ns.name()]);
    ns.add_address("uplink", &format!("{SOLO_NODE_V6}/64"));
    ns.ip(&["link", "set", "uplink", "up"]);
    ns.ip(&[
        "route",
        "add",
        &format!("{SOLO_APISERVER}/128"),
        "via",
        SOLO_LINK_V6,
    ]);
    cp_ns.add_address(&far, &format!("{SOLO_LINK_V6}/64"));
    cp_ns.ip(&["link", "set", &far, "up"]);
    ns
}

/// A namespace of its own for a control plane to serve from: a veth with both ends
/// inside (this kernel has no dummy driver) carrying `addrs` (CIDRs; IPv6 without DAD,
/// usable at once), up.
pub fn serving_namespace(tag: &str, addrs: &[&str]) -> Netns {
    let ns = Netns::new(tag);
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    ns.ip(&["link", "set", "eth1", "up"]);
    for addr in addrs {
        ns.add_address("eth0", addr);
    }
    ns.ip(&["link", "set", "eth0", "up"]);
    ns
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
