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
	# Captured first: inside `eval "$(…)"` a failing setup.sh would not stop the caller.
	local tools
	tools=$(e2e/setup.sh) || exit 1
	eval "$tools"
	export WEFT_TOOLS_BIN WEFT_CNI_PLUGINS PROMETHEUS WEFT_KUBE_BIN KUBE_APISERVER ETCD KUBECTL HELM
}

# weft_state_on_tmpfs: weftd's state dir defaults to /run/weft/state, tmpfs on real
# nodes; the harness puts test nodes' state under TMPDIR, so keep that on tmpfs too
# unless the caller chose otherwise (on a disk, weftd's per-allocation records cost
# about 1 ms per ADD).
weft_state_on_tmpfs() {
	if [ -z "${TMPDIR:-}" ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
		export TMPDIR=/dev/shm
	fi
}

# weft_run_bench NAME ARGS...: runs target/release/NAME ARGS and removes what it leaves.
# Benchmarks name their namespaces and temp files w<pid % 100000>x...; release builds
# abort on panic (their hook removes the namespaces) and a signal ends them without any
# cleanup, so this removes what is left: processes inside those namespaces (by pid), the
# namespaces, the temp files.
weft_run_bench() {
	local name=$1
	shift
	local target=${CARGO_TARGET_DIR:-target}
	WEFT_PROFILE=release "$target/release/$name" "$@" &
	WEFT_BENCH_PID=$!
	# Background jobs of a script ignore SIGINT, so pass Ctrl-C on as SIGTERM.
	trap 'kill -TERM "$WEFT_BENCH_PID" 2>/dev/null || true; wait "$WEFT_BENCH_PID" 2>/dev/null || true; exit 130' INT TERM
	trap weft_bench_cleanup EXIT
	wait "$WEFT_BENCH_PID"
}

weft_bench_cleanup() {
	local prefix="w$((WEFT_BENCH_PID % 100000))x" ns p
	for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix" || true); do
		for p in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "${TMPDIR:-/tmp}"/weft-*-"$prefix"*
}

# weft_build_static_plugin: the plugin as the image ships it, statically linked: a
# process on the hot path of every pod start that skips the dynamic loader starts
# ~0.25 ms sooner, and it runs on every node beside whatever libc the node has.
# RUSTFLAGS with an explicit --target applies to the plugin only, not to build scripts
# and proc macros. The binary: target/x86_64-unknown-linux-gnu/release/weft.
weft_build_static_plugin() {
	RUSTFLAGS="-C target-feature=+crt-static" \
		cargo build --release --locked -p weft-cni --target x86_64-unknown-linux-gnu
}
