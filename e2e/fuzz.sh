#!/usr/bin/env bash
# Runs weft's fuzz targets (fuzz/, cargo-fuzz and libFuzzer, nightly Rust): what runs as
# root on every pod start and in weftd, fed with generated input.
#
#   e2e/fuzz.sh [--minutes N | --seconds N] [--jobs J] [TARGET...]   fuzz each TARGET
#   e2e/fuzz.sh --replay [TARGET...]   replay the checked-in seeds and regressions only
#   e2e/fuzz.sh --list                 name the targets
#
# Defaults: every target, 10 minutes each, one at a time, at nice 19. Corpora grow in
# $WEFT_FUZZ_CACHE (default ~/.cache/weft/fuzz) and are reused by the next run; the
# checked-in fuzz/seeds/TARGET and fuzz/regressions/TARGET are read, never written. A
# crash leaves its input in $WEFT_FUZZ_CACHE/artifacts/TARGET/ and fails the run: copy
# it to fuzz/regressions/TARGET/ and add a unit test next to the code it broke.
# Installs the nightly toolchain (rustup) and cargo-fuzz if they are missing. Exit
# status 0 only when no target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

seconds=600
jobs=1
replay=false
targets=()
while (($#)); do
    case $1 in
    --minutes) seconds=$(($2 * 60)); shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --replay) replay=true; shift ;;
    --list) sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^weft-fuzz$'; exit 0 ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
    esac
done
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <("$0" --list)
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
    # libFuzzer's instrumentation (-Zsanitizer) needs nightly; the product stays on stable.
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cache=${WEFT_FUZZ_CACHE:-$HOME/.cache/weft/fuzz}
# Store-target scratch trees live on tmpfs when there is one, and go with this run.
scratch=$(mktemp -d "$( [[ -d /dev/shm ]] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/weft-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$cache/bin"

# Optimised, with overflow checks and debug assertions on: an overflow is a crash here,
# as it is in the workspace's debug builds. The build cache lives beside the corpora, so
# a fresh clone (CI's) reuses it.
target_dir=$cache/target
for t in "${targets[@]}"; do
    if ! nice -n 19 cargo +nightly fuzz build --fuzz-dir fuzz --target-dir "$target_dir" -O --debug-assertions "$t" >"$scratch/build.log" 2>&1; then
        tail -40 "$scratch/build.log" >&2
        exit 1
    fi
done
built=$target_dir/x86_64-unknown-linux-gnu/release
for t in "${targets[@]}"; do
    [[ -x $built/$t ]] || { echo "fuzz.sh: no target '$t' (see --list)" >&2; exit 2; }
    # A copy, so that rebuilding while a long run goes on does not swap its binary.
    # Copy and rename: a running binary cannot be overwritten ("text file busy").
    cp "$built/$t" "$cache/bin/$t.tmp"
    mv -f "$cache/bin/$t.tmp" "$cache/bin/$t"
done

# The inputs a target reads: its growing corpus first (libFuzzer writes new finds into
# the first directory only), then the checked-in ones.
inputs() {
    local t=$1
    mkdir -p "$cache/corpus/$t"
    echo "$cache/corpus/$t"
    for d in fuzz/seeds/$t fuzz/regressions/$t; do
        [[ -d $d ]] && echo "$repo/$d"
    done
}

run_one() {
    local t=$1 log=$cache/logs/$t.log
    mkdir -p "$cache/artifacts/$t" "$cache/logs" "$scratch/$t"
    local -a limit=(-max_total_time="$seconds")
    if $replay; then
        limit=(-runs=0)
    fi
    mapfile -t dirs < <(inputs "$t")
    WEFT_FUZZ_SCRATCH=$scratch/$t nice -n 19 "$cache/bin/$t" "${limit[@]}" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$cache/artifacts/$t/" "${dirs[@]}" >"$log" 2>&1
}

pids=()
for t in "${targets[@]}"; do
    while (($(jobs -rp | wc -l) >= jobs)); do
        wait -n || true
    done
    run_one "$t" &
    pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || status=1
done

printf '%-16s %12s %10s %8s  %s\n' target runs exec/s crashes result
for t in "${targets[@]}"; do
    log=$cache/logs/$t.log
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    # libFuzzer stops at its first crash, timeout or out-of-memory, writing the input.
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | grep -v /slow-unit- | tail -1 || true)
    crashes=$([[ -n $artifact ]] && echo 1 || echo 0)
    if ((crashes > 0)); then
        printf '%-16s %12s %10s %8s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "$crashes" "CRASH: $artifact (log: $log)"
        status=1
    else
        printf '%-16s %12s %10s %8s  %s\n' "$t" "${runs:-?}" "${rate:-?}" 0 ok
    fi
done
exit $status
