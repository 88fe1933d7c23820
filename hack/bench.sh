#!/usr/bin/env bash
# The provisioning benchmark (docs/performance.md): release builds of the manager and of the
# benchmark, then N = 10, 50, 100 machines (or the sizes given as arguments). Installs what it
# needs like the tests do. Prints Markdown tables.
#
#   hack/bench.sh                    # N = 10, 50, 100, three rounds each
#   hack/bench.sh 50 10 --rounds 5   # other sizes and rounds
#   hack/bench.sh --pool [SIZES]     # a MachinePool scaled 0 -> N (default 20) and back to 0,
#                                    # against the same floor; --rounds R as above
#   hack/bench.sh --real [ROUNDS]    # only the real kubeadm cluster (1 control plane + 2
#                                    # workers) against its floor, ROUNDS rounds (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

args=("$@")
if [[ "${1:-}" == --real ]]; then
    rounds="${2:-3}"
    [[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 --real [ROUNDS]" >&2; exit 2; }
    args=(--real --rounds "$rounds")
fi

eval "$(hack/install-test-deps.sh)"
echo "== building (the manager as it ships: release; the harness: quick-release)" >&2
cargo build --quiet --release -p capkind --bin capkind
cargo build --quiet --profile quick-release -p capkind-test --bin capkind-bench
CAPKIND_MANAGER_BINARY="$PWD/target/release/capkind" exec target/quick-release/capkind-bench "${args[@]}"
