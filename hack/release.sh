#!/usr/bin/env bash
# `make release`: every release artifact, built locally with nothing but the
# Go module proxy, into bin/release/<version>/ (VERSION: the tag
# config/manager deploys):
#
#   nodeupgrade-image-<version>.oci.tar   the multi-platform image (make image)
#   kubectl-nodeupgrade_<version>_<os>_<arch>.tar.gz
#                                         the kubectl plugin for linux, darwin
#                                         and windows on amd64 and arm64
#   nodeupgrade.yaml                      its krew manifest, pointing at them
#   nodeupgrade-<chart version>.tgz       the Helm chart (helm package)
#   nodeupgrade-crd.yaml                  the CRD alone
#   nodeupgrade-install.yaml              config/default as one file
#   checksums.txt                         sha256 of every file above
#
# Archives are reproducible: files sorted, owned by root, dated at the last
# commit. test/release (make test-release) installs the plugin from the krew
# manifest with krew and runs it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
: "${VERSION:?VERSION is the release tag, e.g. v0.1.0}"
: "${HELM:?HELM is the helm binary}"
RELEASE_DIR=${RELEASE_DIR:-$root/bin/release/$VERSION}
# Where the krew manifest says the archives are: the GitHub release of the tag.
RELEASE_URL=${RELEASE_URL:-https://github.com/nodeupgrade/nodeupgrade/releases/download/$VERSION}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64}
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
log() { printf '[release] %s\n' "$*" >&2; }

rm -rf "$RELEASE_DIR"
mkdir -p "$RELEASE_DIR"
work=$(mktemp -d /tmp/nodeupgrade-release.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The image: make image's OCI layout, as built for this version.
image=bin/image/ghcr.io_nodeupgrade_nodeupgrade_${VERSION}.oci.tar
[[ -f $image ]] || { log "$image missing: run make image first"; exit 1; }
cp "$image" "$RELEASE_DIR/nodeupgrade-image-$VERSION.oci.tar"

# The plugin, one archive per platform holding its binary.
krew_platforms=""
for p in $PLATFORMS; do
	os=${p%/*} arch=${p#*/}
	exe=kubectl-nodeupgrade
	[[ $os == windows ]] && exe=$exe.exe
	dir="$work/$os-$arch"
	mkdir -p "$dir"
	log "kubectl-nodeupgrade for $os/$arch"
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -ldflags='-s -w' -o "$dir/$exe" ./cmd/kubectl-nodeupgrade
	archive=kubectl-nodeupgrade_${VERSION}_${os}_${arch}.tar.gz
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$dir" -cf - "$exe" | gzip -n -9 >"$RELEASE_DIR/$archive"
	sum=$(sha256sum "$RELEASE_DIR/$archive" | cut -d' ' -f1)
	krew_platforms+="  - selector:
      matchLabels:
        os: $os
        arch: $arch
    uri: $RELEASE_URL/$archive
    sha256: $sum
    files:
    - from: $exe
      to: .
    bin: $exe
"
done

cat >"$RELEASE_DIR/nodeupgrade.yaml" <<MANIFEST
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: nodeupgrade
spec:
  version: $VERSION
  homepage: https://github.com/nodeupgrade/nodeupgrade
  shortDescription: Plan, watch, pause, resume and retry KubeEdge edge-node upgrades
  description: |
    Operates the NodeUpgradeJobs of nodeupgrade-controller, which upgrades the
    edgecore of KubeEdge edge nodes: plan a job against the live nodes, watch
    its progress, pause and resume it, retry its failed nodes, and read a
    node's upgrade logs.
  platforms:
$krew_platforms
MANIFEST

log "helm package"
"$HELM" package charts/nodeupgrade --destination "$RELEASE_DIR" >/dev/null
cp config/crd/bases/operations.kubeedge.io_nodeupgradejobs.yaml "$RELEASE_DIR/nodeupgrade-crd.yaml"
kubectl kustomize config/default >"$RELEASE_DIR/nodeupgrade-install.yaml"

(cd "$RELEASE_DIR" && find . -maxdepth 1 -type f ! -name checksums.txt -printf '%f\n' | sort | xargs sha256sum >checksums.txt)
log "done: ${RELEASE_DIR#"$root"/}"
ls -l "$RELEASE_DIR" >&2
