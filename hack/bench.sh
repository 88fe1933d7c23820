#!/usr/bin/env bash
# The provisioning benchmark (docs/performance.md): release builds of the manager and of the
# benchmark, then N = 1, 10, 50 machines (or the sizes given as arguments). Installs what it
# needs like the tests do. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(hack/install-test-deps.sh)"
echo "== building (release)" >&2
cargo build --quiet --release -p capkind --bin capkind -p capkind-test --bin capkind-bench
CAPKIND_MANAGER_BINARY="$PWD/target/release/capkind" exec target/release/capkind-bench "$@"
