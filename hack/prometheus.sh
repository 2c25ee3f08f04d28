#!/usr/bin/env bash
# Extracts Debian's prometheus package (prometheus and promtool) into
# bin/prometheus-<version>/, for the monitoring tests: promtool checks and
# unit-tests the alert rules, and a real Prometheus answers the dashboard's
# queries (test/monitoring, and test/kubeedge scraping the real controller).
#
# The .deb is downloaded with apt-get into a folder of its own and unpacked
# with dpkg-deb, not installed: installing it would start a Prometheus
# service on the machine. The binaries are Go programs that need only libc.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-2.42.0}
dest="$root/bin/prometheus-$PROMETHEUS_VERSION"
log() { printf '[prometheus] %s\n' "$*" >&2; }

if [[ -x "$dest/promtool" && -x "$dest/prometheus" ]]; then
	log "$PROMETHEUS_VERSION: cached at ${dest#"$root"/}"
	exit 0
fi
tmp=$(mktemp -d /tmp/nodeupgrade-prometheus.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs"
chmod -R a+rwx "$tmp"
# Package lists of its own: the host's apt state stays as it was, and a
# fresh machine needs no `apt-get update` first.
opts=(-o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache")
log "downloading Debian's prometheus package"
apt-get "${opts[@]}" update -qq
(cd "$tmp/debs" && apt-get "${opts[@]}" download prometheus)
deb=$(ls "$tmp"/debs/prometheus_*.deb)
version=$(dpkg-deb -f "$deb" Version)
if [[ ${version%%+*} != "$PROMETHEUS_VERSION" ]]; then
	log "Debian serves prometheus $version, not $PROMETHEUS_VERSION: set PROMETHEUS_VERSION=${version%%+*} (Makefile) after checking the rules' tests pass with it"
	exit 1
fi
dpkg-deb -x "$deb" "$tmp/x"
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
cp "$tmp/x/usr/bin/prometheus" "$tmp/x/usr/bin/promtool" "$dest.tmp/"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
log "$version: extracted into ${dest#"$root"/}"
