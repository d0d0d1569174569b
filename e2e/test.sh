#!/usr/bin/env bash
# weft's test command (the README's and CI's): installs what the machine lacks, checks
# formatting and lints, builds every binary, runs the cluster tier (real kubelets and
# containerd, weft installed by helm: e2e/cluster/test.sh), then unit tests and the
# real-part end-to-end tests (real kernel, network namespaces, cnitool, reference plugins,
# Prometheus, a real kube-apiserver, helm). Needs root: the tests create and always remove their own namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

. e2e/lib.sh
weft_prelude "$@"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The e2e tests run the built binaries exactly as a runtime would, so build them first.
cargo build --workspace --bins --locked
# The cluster tier: real kubelets and containerd, weft installed by helm (a few minutes).
e2e/cluster/test.sh
cargo test --workspace --locked "$@"
# Every fuzz target for 20 s, two at a time, after replaying the checked-in seeds and
# regressions (the 10-minute runs: e2e/fuzz.sh, see the README's Security section).
e2e/fuzz.sh --seconds 20 --jobs 2
