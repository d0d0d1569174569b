#!/usr/bin/env bash
# weft's test command (the README's and CI's): installs what the machine lacks, checks
# formatting and lints, builds every binary, then runs unit tests and the real-part
# end-to-end tests (real kernel, network namespaces, cnitool, reference plugins,
# Prometheus). Needs root: the tests create and always remove their own namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	exec sudo -E "$0" "$@"
fi
# rustup installs cargo in ~/.cargo/bin; login shells add it, CI's shell may not.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
	# shellcheck disable=SC1091
	. "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "test.sh: cargo not found (install Rust with rustup)" >&2; exit 1; }

eval "$(e2e/setup.sh)"
export WEFT_TOOLS_BIN WEFT_CNI_PLUGINS PROMETHEUS

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The e2e tests run the built binaries exactly as a runtime would, so build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
