#!/usr/bin/env bash
# Builds real KubeEdge keadm, edgecore and cloudcore from the vendored source
# tarballs in ../shared/third_party/kubeedge/ into bin/kubeedge-<version>/,
# one folder per version, so a second run costs nothing. Sources are unpacked
# once into bin/kubeedge-src/<version>/. Builds run one at a time (2 cores).
#
# Usage: hack/build-kubeedge.sh [VERSION[:BINARY,...]...]   (default: v1.23.1)
#   v1.23.1                keadm, edgecore and cloudcore
#   v1.21.0:edgecore       only edgecore (each binary costs minutes cold)
#   v1.23.1@arm64:keadm    for another architecture, into bin/kubeedge-<version>-linux-<arch>/
#                          (edgecore's cgo with Debian's gcc-<triplet>, e.g. gcc-aarch64-linux-gnu)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
src_dir=${KUBEEDGE_SRC_DIR:-"$root/../shared/third_party/kubeedge"}
if [[ -z ${KUBEEDGE_SRC_DIR:-} && ! -d $src_dir ]]; then
	# A clone elsewhere (CI's clean clone) finds the tarballs beside the
	# checkout it was cloned from.
	origin=$(git -C "$root" remote get-url origin 2>/dev/null || true)
	if [[ -n $origin && -d "$origin/../shared/third_party/kubeedge" ]]; then
		src_dir="$origin/../shared/third_party/kubeedge"
	fi
fi
versions=("$@")
[[ ${#versions[@]} -gt 0 ]] || versions=(v1.23.1)

log() { printf '[build-kubeedge] %s\n' "$*" >&2; }

for spec_arg in "${versions[@]}"; do
	v=${spec_arg%%:*}
	wanted="keadm,edgecore,cloudcore"
	[[ $spec_arg == *:* ]] && wanted=${spec_arg#*:}
	arch=""
	if [[ $v == *@* ]]; then
		arch=${v#*@}
		v=${v%@*}
	fi
	if ! [[ $v =~ ^v([0-9]+)\.([0-9]+)\.([0-9]+)$ ]]; then
		log "bad version $v (want vMAJOR.MINOR.PATCH)"
		exit 2
	fi
	major=${BASH_REMATCH[1]}
	minor=${BASH_REMATCH[2]}
	tree="$bin/kubeedge-src/$v"
	if [[ ! -f "$tree/go.mod" ]]; then
		tarball="$src_dir/kubeedge-$v-src.tar.xz"
		[[ -f $tarball ]] || { log "missing $tarball"; exit 1; }
		log "$v: unpacking ${tarball#"$root"/}"
		rm -rf "$tree.tmp"
		mkdir -p "$tree.tmp"
		tar -xJf "$tarball" -C "$tree.tmp"
		# The tarball may hold the tree at its top or in one folder.
		if [[ ! -f "$tree.tmp/go.mod" ]]; then
			inner=$(find "$tree.tmp" -mindepth 2 -maxdepth 2 -name go.mod -printf '%h\n' | head -n1)
			[[ -n $inner ]] || { log "$v: no go.mod in $tarball"; exit 1; }
			rm -rf "$tree"
			mv "$inner" "$tree"
			rm -rf "$tree.tmp"
		else
			rm -rf "$tree"
			mv "$tree.tmp" "$tree"
		fi
	fi
	out="$bin/kubeedge-$v"
	cross=()
	if [[ -n $arch ]]; then
		case $arch in
		arm64) cc=aarch64-linux-gnu-gcc ;;
		*) log "unsupported architecture $arch (want arm64)"; exit 2 ;;
		esac
		command -v "$cc" >/dev/null || { log "$cc missing: apt-get install gcc-aarch64-linux-gnu"; exit 1; }
		out="$bin/kubeedge-$v-linux-$arch"
		cross=(GOOS=linux "GOARCH=$arch" "CC=$cc")
	fi
	mkdir -p "$out"
	ldflags="-X github.com/kubeedge/kubeedge/pkg/version.gitVersion=$v -X github.com/kubeedge/kubeedge/pkg/version.gitMajor=$major -X github.com/kubeedge/kubeedge/pkg/version.gitMinor=$minor -X github.com/kubeedge/kubeedge/pkg/version.gitTreeState=clean"
	# name package cgo
	for spec in "keadm ./keadm/cmd/keadm 0" "edgecore ./edge/cmd/edgecore 1" "cloudcore ./cloud/cmd/cloudcore 0"; do
		read -r name pkg cgo <<<"$spec"
		[[ ",$wanted," == *",$name,"* ]] || continue
		if [[ -x "$out/$name" ]]; then
			log "$v${arch:+ $arch} $name: cached at ${out#"$root"/}/$name"
			continue
		fi
		log "$v${arch:+ $arch} $name: building (first time only, a few minutes)"
		start=$SECONDS
		(cd "$tree" && env GOWORK=off GOFLAGS=-mod=vendor CGO_ENABLED=$cgo "${cross[@]}" go build -ldflags "$ldflags" -o "$out/$name.tmp" "$pkg")
		mv "$out/$name.tmp" "$out/$name"
		log "$v${arch:+ $arch} $name: built in $((SECONDS - start)) s"
	done
done
