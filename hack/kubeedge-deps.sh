#!/usr/bin/env bash
# Host packages and the cached edge-node root filesystem for the real-KubeEdge
# test world (test/kubeedgeworld).
#
#   hack/kubeedge-deps.sh packages   install the Debian packages when missing
#   hack/kubeedge-deps.sh image      only what `make image` needs (busybox-static)
#   hack/kubeedge-deps.sh rootfs     build bin/kubeedge-rootfs-<ROOTFS_VERSION>.tar once
#   hack/kubeedge-deps.sh            both
#
# The rootfs is Debian bookworm (debootstrap minbase) with systemd, containerd,
# runc, the CNI plugins and busybox installed inside, so every edge node is a
# machine of its own with systemd as PID 1. It is built once (~1-2 min) and
# copied per test run. Bump ROOTFS_VERSION when the package list changes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
ROOTFS_VERSION=${ROOTFS_VERSION:-bookworm-1}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
host_pkgs=(debootstrap systemd-container containerd runc containernetworking-plugins busybox-static xz-utils)
node_pkgs=systemd,systemd-sysv,dbus,procps,sudo,iproute2,containerd,runc,containernetworking-plugins,busybox-static,ca-certificates

log() { printf '[kubeedge-deps] %s\n' "$*" >&2; }

# install_missing PKG...: apt-get install those of PKG that are not installed.
install_missing() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [[ ${#missing[@]} -eq 0 ]]; then
		log "host packages: all present ($*)"
		return 0
	fi
	if [[ $(id -u) -ne 0 ]]; then
		log "missing Debian packages: ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
		exit 1
	fi
	log "host packages: installing ${missing[*]}"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

packages() { install_missing "${host_pkgs[@]}"; }

rootfs() {
	local out="$bin/kubeedge-rootfs-$ROOTFS_VERSION.tar"
	if [[ -f $out ]]; then
		log "rootfs: cached at ${out#"$root"/}"
		return 0
	fi
	local dir
	dir=$(mktemp -d /tmp/kubeedge-rootfs.XXXXXX)
	trap 'rm -rf "$dir"' RETURN
	log "rootfs: debootstrap bookworm into $dir (first time only)"
	local start=$SECONDS
	debootstrap --variant=minbase --include="$node_pkgs" bookworm "$dir/root" "$MIRROR" >"$dir/debootstrap.log" 2>&1 || {
		tail -n 30 "$dir/debootstrap.log" >&2
		exit 1
	}
	# Smaller tarball, and no service started by package scripts leaks.
	rm -rf "$dir/root/var/cache/apt/archives/"*.deb "$dir/root/var/lib/apt/lists/"*
	mkdir -p "$bin"
	tar -C "$dir/root" --numeric-owner -cf "$out.tmp" .
	mv "$out.tmp" "$out"
	log "rootfs: built in $((SECONDS - start)) s at ${out#"$root"/}"
}

case ${1:-all} in
packages) packages ;;
image) install_missing busybox-static ;;
rootfs) rootfs ;;
all) packages; rootfs ;;
*) log "usage: $0 [packages|image|rootfs|all]"; exit 2 ;;
esac
