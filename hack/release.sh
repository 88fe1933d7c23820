#!/usr/bin/env bash
# Lays out a clusterctl local repository for this provider:
#   <out>/infrastructure-kind/<version>/{infrastructure-components.yaml,metadata.yaml,cluster-template*.yaml,clusterclass-*.yaml}
# Usage: hack/release.sh [version] [out]   (default v0.1.0 and ./out)
# Then: clusterctl init --infrastructure kind --config <a clusterctl.yaml whose providers entry
# points at file://<out>/infrastructure-kind/<version>/infrastructure-components.yaml>
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-v0.1.0}"
out="${2:-out}"
dir="$out/infrastructure-kind/$version"
mkdir -p "$dir"
kubectl kustomize config/default > "$dir/infrastructure-components.yaml"
cp metadata.yaml "$dir/"
cp templates/cluster-template*.yaml templates/clusterclass-*.yaml "$dir/"
echo "$dir"
