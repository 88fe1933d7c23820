#!/usr/bin/env bash
# Lays out a clusterctl local repository for this provider:
#   <out>/infrastructure-kind/<version>/{infrastructure-components.yaml,metadata.yaml,cluster-template*.yaml,clusterclass-*.yaml}
# Usage: hack/release.sh [version] [out]   (default v<the Cargo workspace version> and ./out)
# The components default to the manager image of that version (CAPKIND_IMAGE_TAG overrides
# it at install time, as before), and the version's series must be in metadata.yaml: clusterctl
# refuses a version no release series covers.
# Then: clusterctl init --infrastructure kind --config <a clusterctl.yaml whose providers entry
# points at file://<out>/infrastructure-kind/<version>/infrastructure-components.yaml>
set -euo pipefail
cd "$(dirname "$0")/.."
cargo_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
version="${1:-v$cargo_version}"
out="${2:-out}"
if ! [[ "$version" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "release.sh: $version is not a semantic version vX.Y.Z, which clusterctl needs" >&2
  exit 1
fi
major="${BASH_REMATCH[1]}" minor="${BASH_REMATCH[2]}"
if ! awk -v major="$major" -v minor="$minor" '
    /^- major:/ { m = $3 } /^  minor:/ && m == major && $2 == minor { found = 1 }
    END { exit !found }' metadata.yaml; then
  echo "release.sh: metadata.yaml has no release series $major.$minor for $version" >&2
  exit 1
fi
dir="$out/infrastructure-kind/$version"
mkdir -p "$dir"
kubectl kustomize config/default \
  | sed "s/\${CAPKIND_IMAGE_TAG:=[^}]*}/\${CAPKIND_IMAGE_TAG:=$version}/" \
  > "$dir/infrastructure-components.yaml"
grep -q "CAPKIND_IMAGE_TAG:=$version}" "$dir/infrastructure-components.yaml" || {
  echo "release.sh: the components name no \${CAPKIND_IMAGE_TAG:=...} image tag to set" >&2
  exit 1
}
cp metadata.yaml "$dir/"
cp templates/cluster-template*.yaml templates/clusterclass-*.yaml "$dir/"
echo "$dir"
