#!/usr/bin/env bash
# Puts etcd 3.5 (etcd, etcdctl, etcdutl) from Debian trixie's etcd-server and etcd-client
# packages into a private prefix, for the restore drills on the etcd generation production runs
# (Debian bookworm ships 3.4, which has no etcdutl). Nothing is installed system-wide: the
# trixie source lives only in a private apt directory (its own sources list, lists and cache,
# an empty dpkg status), `apt-get download` fetches the two .deb files and `dpkg -x` unpacks them.
#
#   tools/ensure-etcd35.sh            # download and unpack when missing
#   tools/ensure-etcd35.sh --check    # check only
#
# Environment: ETCD35_PREFIX (default /opt/etcd-3.5; the binaries land in $ETCD35_PREFIX/usr/bin),
# ETCD35_VERSION (a Debian version to pin, e.g. 3.5.16-4; default the suite's current one, so a
# Debian security update does not break the download), ETCD35_SUITE (default trixie).
set -euo pipefail

prefix="${ETCD35_PREFIX:-/opt/etcd-3.5}"
version="${ETCD35_VERSION:-}"
suite="${ETCD35_SUITE:-trixie}"
bin="${prefix}/usr/bin"

have() {
  local tool
  for tool in etcd etcdctl etcdutl; do
    [[ -x "${bin}/${tool}" ]] || return 1
  done
  [[ "$("${bin}/etcd" --version 2>/dev/null | sed -n 's/^etcd Version: //p')" == 3.5.* ]]
}

case "${1:-}" in
  --check)
    have && exit 0
    echo "ensure-etcd35: etcd 3.5 is missing from ${bin}; run tools/ensure-etcd35.sh as root" >&2
    exit 1
    ;;
  "") ;;
  -h | --help)
    sed -n '2,13p' "$0"
    exit 0
    ;;
  *)
    echo "ensure-etcd35: unknown argument $1" >&2
    exit 2
    ;;
esac

have && exit 0
if [[ "$(id -u)" -ne 0 ]]; then
  echo "ensure-etcd35: etcd 3.5 is missing from ${bin} and this run (not root) cannot put it there" >&2
  exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/ensure-etcd35.XXXXXX")"
trap 'rm -rf -- "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian ${suite} main" \
  >"$work/sources.list"
apt_private=(
  -o "Dir::Etc::sourcelist=$work/sources.list"
  -o "Dir::Etc::sourceparts=$work/no-parts"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache=$work/cache"
  -o "Dir::State::status=/dev/null"
  -o "APT::Sandbox::User=root"
)
echo "ensure-etcd35: fetching etcd-server and etcd-client ${version:-(current)} from ${suite} into ${prefix}"
timeout 600 apt-get -qq "${apt_private[@]}" update
(cd "$work/debs" && timeout 600 apt-get -qq "${apt_private[@]}" download \
  "etcd-server${version:+=${version}}" "etcd-client${version:+=${version}}")
staging="${prefix}.staging.$$"
rm -rf -- "$staging"
mkdir -p -- "$staging"
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$staging"; done
rm -rf -- "$prefix"
mv -- "$staging" "$prefix"
have || {
  echo "ensure-etcd35: ${bin} has no working etcd 3.5 after unpacking" >&2
  exit 1
}
echo "ensure-etcd35: $("${bin}/etcd" --version | head -n 1) in ${bin}"
