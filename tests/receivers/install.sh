#!/usr/bin/env bash
# Install the real syslog receivers the codec and sink tests parse our output with.
#
#   bash tests/receivers/install.sh        # as root (CI, dev containers); idempotent, quiet when done
#
# rsyslog 8.2302 (+ gnutls driver, imrelp/librelp 1.11 for RELP, mmnormalize/liblognorm for CEF)
# comes from apt. syslog-ng-core 3.38 Conflicts with rsyslog in apt (both provide system-log-daemon),
# so it is unpacked from its .deb with `apt-get download` + `dpkg -x` into $SIEM_AGENT_SYSLOG_NG_ROOT
# and run from there.
# No daemon is started: the test fixtures run both receivers in the foreground on loopback.
set -euo pipefail

SNG_ROOT="${SIEM_AGENT_SYSLOG_NG_ROOT:-/opt/siem-agent-test/syslog-ng}"
SNG_VERSION="3.38"
APT_PACKAGES=(rsyslog rsyslog-gnutls rsyslog-relp liblognorm5 openssl
              libivykis0 libnet1 libwrap0 libjson-c5 libglib2.0-0 libpcre3 libcap2 libssl3)
export DEBIAN_FRONTEND=noninteractive

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
sng_ok=0
[ -x "$SNG_ROOT/usr/sbin/syslog-ng" ] && [ -f "$SNG_ROOT/usr/lib/syslog-ng/$SNG_VERSION/libjson-plugin.so" ] \
  && [ -f "$SNG_ROOT/.installed" ] && sng_ok=1

if [ "${#missing[@]}" -eq 0 ] && [ "$sng_ok" -eq 1 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: needs root to install: ${missing[*]:-} ${sng_ok/1/}${sng_ok/0/syslog-ng}" >&2
  exit 1
fi

log="$(mktemp)"
tmp="$(mktemp -d)"
chmod 755 "$tmp"  # apt-get download drops privileges to _apt
trap 'rm -rf "$tmp" "$log"' EXIT
# Quiet on success; the full apt output on failure.
run() { "$@" >>"$log" 2>&1 || { cat "$log" >&2; echo "install.sh: failed: $*" >&2; exit 1; }; }
apt_updated=0
apt_update() { [ "$apt_updated" -eq 1 ] || { run apt-get update; apt_updated=1; }; }

if [ "${#missing[@]}" -gt 0 ]; then
  apt_update
  # Docker-style images ship /usr/sbin/policy-rc.d (exit 101), so postinst starts no system daemon.
  run apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ "$sng_ok" -eq 0 ]; then
  apt_update
  (cd "$tmp" && run apt-get download syslog-ng-core)
  rm -rf "$SNG_ROOT"
  mkdir -p "$SNG_ROOT"
  for deb in "$tmp"/*.deb; do run dpkg -x "$deb" "$SNG_ROOT"; done
  touch "$SNG_ROOT/.installed"
fi

rsyslogd -v | head -n 1
LD_LIBRARY_PATH="$SNG_ROOT/usr/lib/syslog-ng" "$SNG_ROOT/usr/sbin/syslog-ng" -V \
  --module-path="$SNG_ROOT/usr/lib/syslog-ng/$SNG_VERSION" | head -n 1
