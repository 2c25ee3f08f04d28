#!/usr/bin/env bash
# Host packages and the cached edge-node root filesystem for the real-KubeEdge
# test world (test/kubeedgeworld).
#
#   hack/kubeedge-deps.sh packages   install the Debian packages when missing
#   hack/kubeedge-deps.sh image      only what `make image` needs (busybox-static,
#                                    also for arm64 and armhf in bin/busybox-<arch>/)
#   hack/kubeedge-deps.sh rootfs     build bin/kubeedge-rootfs-<ROOTFS_VERSION>.tar once
#   hack/kubeedge-deps.sh rootfs-arm64  the arm64 nodes' (…-arm64.tar), under QEMU
#   hack/kubeedge-deps.sh arm64-tools   QEMU and the arm64 cross C compiler
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
host_pkgs=(debootstrap systemd-container containerd runc containernetworking-plugins busybox-static xz-utils docker-registry apache2-utils)
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

# busybox-static for the images' other platforms (test/projectimage and the
# world's multi-platform images), as bin/busybox-<arch>/busybox from Debian's
# own .deb of the same release. apt-get works in a folder of its own
# (package lists and cache under a temporary folder, the architectures given
# on the command line), so the host's apt state and dpkg's architectures stay
# as they were.
IMAGE_ARCHES=${IMAGE_ARCHES:-arm64 armhf}
busybox_foreign() {
	local missing=()
	for a in $IMAGE_ARCHES; do
		[[ -x "$bin/busybox-$a/busybox" ]] || missing+=("$a")
	done
	if [[ ${#missing[@]} -eq 0 ]]; then
		log "busybox-static: cached for $IMAGE_ARCHES"
		return 0
	fi
	local tmp opts=()
	tmp=$(mktemp -d /tmp/kubeedge-busybox.XXXXXX)
	trap 'rm -rf "$tmp"' RETURN
	mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs"
	chmod -R a+rwx "$tmp"
	opts=(-o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o "APT::Architectures::=$(dpkg --print-architecture)")
	for a in "${missing[@]}"; do opts+=(-o "APT::Architectures::=$a"); done
	log "busybox-static: downloading for ${missing[*]}"
	apt-get "${opts[@]}" update -qq
	(cd "$tmp/debs" && apt-get "${opts[@]}" download "${missing[@]/#/busybox-static:}")
	for a in "${missing[@]}"; do
		local deb
		deb=$(ls "$tmp/debs/"busybox-static_*_"$a".deb)
		rm -rf "$tmp/x" "$bin/busybox-$a.tmp"
		dpkg-deb -x "$deb" "$tmp/x"
		mkdir -p "$bin/busybox-$a.tmp"
		cp "$tmp/x/bin/busybox" "$bin/busybox-$a.tmp/busybox"
		basename "$deb" >"$bin/busybox-$a.tmp/deb"
		rm -rf "$bin/busybox-$a"
		mv "$bin/busybox-$a.tmp" "$bin/busybox-$a"
		log "busybox-static: $a from $(basename "$deb")"
	done
}

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

# binfmt_on registers QEMU's arm64 interpreter with binfmt_misc (flags POF,
# Debian's qemu-user-static entry: F opens the interpreter at registration,
# so arm64 programs run in chroots and machines that lack it too), mounting
# binfmt_misc first if needed. It prints what it did, for binfmt_off: the host
# is left as it was found.
binfmt_on() {
	local did=""
	if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
		mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
		did+=" mounted"
	fi
	if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
		grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register
		did+=" registered"
	fi
	echo "$did"
}
binfmt_off() {
	[[ $1 == *registered* ]] && echo -1 >/proc/sys/fs/binfmt_misc/qemu-aarch64
	[[ $1 == *mounted* ]] && umount /proc/sys/fs/binfmt_misc
	return 0
}

# The arm64 edge nodes' root file system: the same packages for arm64
# (debootstrap under QEMU user emulation), with two native parts: Debian's
# arm64 runc cannot create a container under QEMU (user-mode emulation
# refuses its namespace clone: "read init-p: connection reset by peer"), and
# neither can containerd's arm64 runc shim start ("failed to start shim:
# start failed: io.containerd.runc.v2: invalid argument", measured in the
# world), so the host's x86-64 runc and containerd-shim-runc-v2, their loader
# and libraries go into the machine (/usr/sbin/runc, /usr/bin/..., /lib64,
# /lib/x86_64-linux-gnu: no clash with arm64's paths). Everything else in the
# machine is arm64, and so is every container's code.
rootfs_arm64() {
	local out="$bin/kubeedge-rootfs-$ROOTFS_VERSION-arm64.tar"
	if [[ -f $out ]]; then
		log "rootfs arm64: cached at ${out#"$root"/}"
		return 0
	fi
	install_missing qemu-user-static runc containerd
	local dir did
	dir=$(mktemp -d /tmp/kubeedge-rootfs-arm64.XXXXXX)
	did=$(binfmt_on)
	trap 'binfmt_off "$did"; rm -rf "$dir"' RETURN
	log "rootfs arm64: debootstrap --arch=arm64 bookworm into $dir (first time only; QEMU${did:+;$did binfmt})"
	local start=$SECONDS
	debootstrap --arch=arm64 --variant=minbase --include="$node_pkgs" bookworm "$dir/root" "$MIRROR" >"$dir/debootstrap.log" 2>&1 || {
		tail -n 30 "$dir/debootstrap.log" >&2
		exit 1
	}
	rm -rf "$dir/root/var/cache/apt/archives/"*.deb "$dir/root/var/lib/apt/lists/"*
	mkdir -p "$dir/root/lib64" "$dir/root/lib/x86_64-linux-gnu"
	cp /usr/sbin/runc "$dir/root/usr/sbin/runc"
	cp /usr/bin/containerd-shim-runc-v2 "$dir/root/usr/bin/containerd-shim-runc-v2"
	cp -L /lib64/ld-linux-x86-64.so.2 "$dir/root/lib64/"
	cp -L /lib/x86_64-linux-gnu/libc.so.6 /lib/x86_64-linux-gnu/libseccomp.so.2 "$dir/root/lib/x86_64-linux-gnu/"
	mkdir -p "$bin"
	tar -C "$dir/root" --numeric-owner -cf "$out.tmp" .
	mv "$out.tmp" "$out"
	log "rootfs arm64: built in $((SECONDS - start)) s at ${out#"$root"/}"
}

case ${1:-all} in
packages) packages ;;
image) install_missing busybox-static; busybox_foreign ;;
rootfs) rootfs ;;
rootfs-arm64) rootfs_arm64 ;;
arm64-tools) install_missing qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross ;;
all) packages; busybox_foreign; rootfs ;;
*) log "usage: $0 [packages|image|rootfs|rootfs-arm64|arm64-tools|all]"; exit 2 ;;
esac
