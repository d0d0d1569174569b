# Shared prelude of weft's e2e scripts (sourced, not run).
# weft_prelude ARGS...: re-runs the calling script as root (network namespaces need it),
# puts rustup's cargo on PATH when the shell lacks it, and loads the tool paths that
# e2e/setup.sh installs (WEFT_TOOLS_BIN, WEFT_CNI_PLUGINS, PROMETHEUS, and the test control
# plane's WEFT_KUBE_BIN, KUBE_APISERVER, ETCD, KUBECTL).
weft_prelude() {
	if [ "$(id -u)" -ne 0 ]; then
		exec sudo -E "$(readlink -f "$0")" "$@"
	fi
	if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
		# shellcheck disable=SC1091
		. "$HOME/.cargo/env"
	fi
	command -v cargo >/dev/null 2>&1 || {
		echo "$0: cargo not found (install Rust with rustup)" >&2
		exit 1
	}
	eval "$(e2e/setup.sh)"
	export WEFT_TOOLS_BIN WEFT_CNI_PLUGINS PROMETHEUS WEFT_KUBE_BIN KUBE_APISERVER ETCD KUBECTL
}
