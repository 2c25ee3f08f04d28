#!/usr/bin/env bash
# Builds the test world's binaries (etcd, kube-apiserver, kwok) from the Go
# module proxy into bin/, one folder per tool and version, so a second run is
# free. Each tool is built from a throw-away module of its own under
# bin/.build/ so their large dependency graphs never touch the product's go.mod.
set -euo pipefail

ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
build="$bin/.build"
mkdir -p "$build"

log() { printf '[build-tools] %s\n' "$*" >&2; }

# build_tool NAME VERSION MODULE PACKAGE OUTPUT [extra go.mod lines...]
build_tool() {
	local name=$1 version=$2 module=$3 pkg=$4 out=$5
	shift 5
	local dest="$bin/$name-$version"
	if [[ -x "$dest/$out" ]]; then
		log "$name $version: cached at ${dest#"$root"/}"
		return 0
	fi
	log "$name $version: building $pkg (first time only)"
	local dir="$build/$name-$version"
	rm -rf "$dir"
	mkdir -p "$dir"
	(
		cd "$dir"
		go mod init "nodeupgrade.local/tools/$name" >/dev/null 2>&1
		for line in "$@"; do printf '%s\n' "$line" >>go.mod; done
		go mod edit -require="$module@$version"
		GOFLAGS=-mod=mod go get "$pkg@$version" >/dev/null
		mkdir -p "$dest.tmp"
		CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags='-s -w' -o "$dest.tmp/$out" "$pkg"
	)
	rm -rf "$dest"
	mv "$dest.tmp" "$dest"
	log "$name $version: done"
}

# kube-apiserver's module points its staging modules at ./staging; outside the
# kubernetes tree each one must be replaced by its published v0.X.Y version.
kube_replaces() {
	local gomod staging_version
	staging_version="v0.${KUBE_VERSION#v1.}"
	gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
	grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' | sort -u |
		while read -r m; do printf 'replace %s => %s %s\n' "$m" "$m" "$staging_version"; done
}

# go_install NAME VERSION PACKAGE [LDFLAGS]: for tools whose module builds
# with a plain `go install pkg@version` (no replace directives).
go_install() {
	local name=$1 version=$2 pkg=$3 ldflags=${4:-}
	local dest="$bin/$name-$version"
	if [[ -x "$dest/$name" ]]; then
		log "$name $version: cached at ${dest#"$root"/}"
		return 0
	fi
	log "$name $version: installing $pkg (first time only)"
	GOBIN="$dest.tmp" CGO_ENABLED=0 go install -trimpath -ldflags="-s -w $ldflags" "$pkg@$version"
	rm -rf "$dest"
	mv "$dest.tmp" "$dest"
}

# helm_k8s_ldflags: Helm's default Kubernetes version, from the client-go its
# module requires, as its Makefile sets it.
helm_k8s_ldflags() {
	local gomod minor pkg
	gomod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
	minor=$(sed -n 's/^\s*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod")
	for pkg in pkg/lint/rules pkg/chartutil; do
		printf -- '-X helm.sh/helm/v3/%s.k8sVersionMajor=1 -X helm.sh/helm/v3/%s.k8sVersionMinor=%s ' "$pkg" "$pkg" "$minor"
	done
}

CONTROLLER_TOOLS_VERSION=${CONTROLLER_TOOLS_VERSION:-v0.23.0}
GOLANGCI_LINT_VERSION=${GOLANGCI_LINT_VERSION:-v2.15.0}
HELM_VERSION=${HELM_VERSION:-v3.21.4}
KREW_VERSION=${KREW_VERSION:-v0.4.3}

want=${*:-etcd kube-apiserver kwok}
for tool in $want; do
	case $tool in
	etcd) build_tool etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3 etcd ;;
	kube-apiserver)
		mapfile -t repl < <(kube_replaces)
		build_tool kube-apiserver "$KUBE_VERSION" k8s.io/kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "${repl[@]}"
		;;
	kubelet | kube-scheduler | kube-controller-manager | kube-proxy)
		# The real cluster's other components (test/kubeedgeworld's kubelet
		# nodes), from the same module as kube-apiserver: the Go build
		# cache shares most of their packages.
		mapfile -t repl < <(kube_replaces)
		build_tool "$tool" "$KUBE_VERSION" k8s.io/kubernetes "k8s.io/kubernetes/cmd/$tool" "$tool" "${repl[@]}"
		;;
	controller-gen) go_install controller-gen "$CONTROLLER_TOOLS_VERSION" sigs.k8s.io/controller-tools/cmd/controller-gen ;;
	golangci-lint) go_install golangci-lint "$GOLANGCI_LINT_VERSION" github.com/golangci/golangci-lint/v2/cmd/golangci-lint ;;
	# The chart's tests (helm lint, helm template, helm install) and `make
	# release` (helm package); no replace directives, so `go install` works.
	# The ldflags are those of Helm's own Makefile: its version, and the
	# Kubernetes version `helm template` and `helm lint` assume (its
	# client-go's minor, v0.36 -> 1.36) instead of the v1.20 default.
	helm)
		go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION $(helm_k8s_ldflags)"
		;;
	# Installs the plugin from the release's krew manifest (test/release).
	krew) go_install krew "$KREW_VERSION" sigs.k8s.io/krew/cmd/krew ;;
	kwok) build_tool kwok "$KWOK_VERSION" sigs.k8s.io/kwok sigs.k8s.io/kwok/cmd/kwok kwok ;;
	*) log "unknown tool $tool"; exit 2 ;;
	esac
done

# envtest wants etcd and kube-apiserver side by side in one folder.
assets="$bin/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION"
if [[ " $want " == *" etcd "* || " $want " == *" kube-apiserver "* ]] && [[ -x "$bin/etcd-$ETCD_VERSION/etcd" && -x "$bin/kube-apiserver-$KUBE_VERSION/kube-apiserver" ]]; then
	mkdir -p "$assets"
	ln -sf "../etcd-$ETCD_VERSION/etcd" "$assets/etcd"
	ln -sf "../kube-apiserver-$KUBE_VERSION/kube-apiserver" "$assets/kube-apiserver"
fi
