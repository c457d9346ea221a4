#!/usr/bin/env bash
# Fetch the real programs the test suite runs against, into a cache folder inside the checkout.
#
#   bash tests/receivers/install.sh        # `make test` runs it; no root needed; quiet when done
#
# What: rsyslog 8.2302 (+ gnutls driver, imrelp/librelp for RELP, mmnormalize/liblognorm for CEF),
# syslog-ng-core 3.38, and — only when it is not on PATH — systemd-analyze (Debian's systemd).
# How: a private apt state (no root, no system change) runs `apt-get update`, then
# `apt-get install --download-only` of each group, and every .deb is unpacked with `dpkg -x` into
# its own root under the cache: rsyslog and syslog-ng Conflict in apt, here they never meet.
# Libraries the system already has are used from the system; the rest come unpacked
# (tests/receivers/binaries.py sets LD_LIBRARY_PATH and rsyslog's module dir).
#
# Where: $SIEM_AGENT_RECEIVERS_DIR, default <checkout>/.cache/receivers (ignored by git).
# A stamp makes the next run a no-op (no download). When the Debian archive cannot be reached, the
# reason is written to <cache>/unavailable and the receiver tests are skipped with it — except under
# CI=true, where this script and those tests fail.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CHECKOUT="$(cd "$HERE/../.." && pwd)"
CACHE="${SIEM_AGENT_RECEIVERS_DIR:-$CHECKOUT/.cache/receivers}"
# Bump when the package list or the layout below changes: the next run reinstalls.
RECIPE="3 rsyslog=rsyslog,rsyslog-gnutls,rsyslog-relp,liblognorm5 syslog-ng=syslog-ng-core systemd=systemd"

RSYSLOG_PACKAGES=(rsyslog rsyslog-gnutls rsyslog-relp liblognorm5)
SYSLOG_NG_PACKAGES=(syslog-ng-core)
SYSTEMD_PACKAGES=(systemd)

ci() { [ "${CI:-}" = "true" ] || [ "${CI:-}" = "1" ]; }

need_systemd() { ! command -v systemd-analyze >/dev/null 2>&1; }

stamp_ok() {
  [ -f "$CACHE/.installed" ] || return 1
  [ "$(head -n 1 "$CACHE/.installed")" = "$RECIPE" ] || return 1
  [ -x "$CACHE/rsyslog/usr/sbin/rsyslogd" ] && [ -x "$CACHE/syslog-ng/usr/sbin/syslog-ng" ] || return 1
  if need_systemd; then [ -x "$CACHE/systemd/usr/bin/systemd-analyze" ] || return 1; fi
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9  # two `make test` in one checkout: the second waits, then finds the stamp

if stamp_ok; then
  exit 0
fi

shown="${CACHE#"$CHECKOUT"/}"
echo "installing test receivers into $shown … (first run only: about 10 MB from the Debian archive)"

unavailable() {
  local reason="$1"
  printf '%s\n' "$reason" >"$CACHE/unavailable"
  echo "install.sh: test receivers unavailable: $reason" >&2
  if ci; then
    echo "install.sh: CI=true: the receiver tests need them; failing" >&2
    exit 1
  fi
  echo "install.sh: the tests that need them will be skipped with this reason" >&2
  exit 0
}

command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 \
  || unavailable "apt-get and dpkg not found (a Debian or Ubuntu machine is needed)"

apt_dir="$CACHE/apt"
log="$CACHE/install.log"
: >"$log"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
# A private state: lists and downloaded archives live in the cache, the system's dpkg status decides
# what is already installed. No lock on the system's files (Debug::NoLocking), no privilege drop.
APT=(apt-get -q -y
     -o "Dir::State::Lists=$apt_dir/lists"
     -o "Dir::Cache=$apt_dir/cache"
     -o "Debug::NoLocking=1"
     -o "APT::Sandbox::User=$(id -un)"
     -o "Acquire::Retries=3"
     -o "Acquire::http::Timeout=30")

if ! "${APT[@]}" update >>"$log" 2>&1; then
  unavailable "apt-get update failed (is the Debian archive reachable? see $shown/install.log)"
fi

# fetch GROUP PACKAGES...: download PACKAGES (and whatever they need that the system lacks), then
# unpack every .deb into <cache>/GROUP. --reinstall fetches a top-level package even when the system
# has it installed: the group's root is then complete whatever the machine had.
fetch() {
  local group="$1"; shift
  local archives="$apt_dir/cache/archives"
  rm -f "$archives"/*.deb
  if ! "${APT[@]}" install --download-only --reinstall --no-install-recommends "$@" >>"$log" 2>&1; then
    unavailable "could not download $* (see $shown/install.log)"
  fi
  rm -rf "$CACHE/$group.new"
  mkdir -p "$CACHE/$group.new"
  local deb
  for deb in "$archives"/*.deb; do
    dpkg -x "$deb" "$CACHE/$group.new" >>"$log" 2>&1 || unavailable "dpkg -x $(basename "$deb") failed"
    basename "$deb" >>"$CACHE/$group.new/.packages"
  done
  rm -rf "${CACHE:?}/$group"
  mv "$CACHE/$group.new" "$CACHE/$group"
  rm -f "$archives"/*.deb
}

rm -f "$CACHE/unavailable" "$CACHE/.installed"
fetch rsyslog "${RSYSLOG_PACKAGES[@]}"
fetch syslog-ng "${SYSLOG_NG_PACKAGES[@]}"
if need_systemd; then
  fetch systemd "${SYSTEMD_PACKAGES[@]}"
fi
# One line each: what the tests will run.
python3 "$HERE/binaries.py" --versions || unavailable "unpacked, but a program does not run (see above)"
printf '%s\n' "$RECIPE" >"$CACHE/.installed"
rm -rf "$apt_dir"  # the lists are only needed to download
