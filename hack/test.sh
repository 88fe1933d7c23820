#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs what the tests need, then checks
# formatting and lints and runs every test against a real kube-apiserver and Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(hack/install-test-deps.sh)"

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build (the manager binary the process tests run)"
cargo build --workspace --bins
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo's own last lines are the doc-test counts).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
