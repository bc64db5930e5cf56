#!/usr/bin/env bash
# Makes sure the command-line tools the tests run for real are installed.
# Installs missing Debian packages through apt-get when run as root; otherwise fails with a
# message naming each missing tool and the package that provides it. Never skips a tool.
#
#   tools/ensure-tools.sh            # check and install
#   tools/ensure-tools.sh --check    # check only
set -euo pipefail

# tool=Debian package (an absolute path where another copy may shadow Debian's on PATH)
required=(
  "cloud-init=cloud-init"
  "shellcheck=shellcheck"
  "envsubst=gettext-base"
  "jq=jq"
  "curl=curl"
  "promtool=prometheus"
  "amtool=prometheus-alertmanager"
  "etcd=etcd-server"
  "etcdctl=etcd-client"
  "age=age"
  "zstd=zstd"
  "/usr/bin/aws=awscli"
  # A real Ceph RADOS Gateway for the backup tests (tests/support/rgw.ts): mon, OSD, radosgw,
  # and the ceph/monmaptool/ceph-authtool commands. No ceph-mgr: RGW does not need it.
  "ceph-mon=ceph-mon"
  "ceph-osd=ceph-osd"
  "radosgw=radosgw"
  "ceph=ceph-common"
)

check_only=false
case "${1:-}" in
  --check) check_only=true ;;
  "") ;;
  -h | --help)
    sed -n '2,7p' "$0"
    exit 0
    ;;
  *)
    echo "ensure-tools: unknown argument $1" >&2
    exit 2
    ;;
esac

missing_tools=()
missing_packages=()
for entry in "${required[@]}"; do
  tool=${entry%%=*}
  package=${entry#*=}
  if ! command -v "$tool" >/dev/null 2>&1; then
    missing_tools+=("$tool")
    missing_packages+=("$package")
  fi
done

# etcd 3.5 (etcdutl) for the restore drills: Debian bookworm has 3.4 only, so a sibling script
# unpacks trixie's packages into a private prefix (never installed system-wide).
etcd35=(--check)
if [ "$check_only" = false ] && [ "$(id -u)" -eq 0 ]; then etcd35=(); fi
bash "$(dirname "$0")/ensure-etcd35.sh" "${etcd35[@]}"

[ "${#missing_tools[@]}" -eq 0 ] && exit 0

describe() {
  local i
  for i in "${!missing_tools[@]}"; do
    echo "  - ${missing_tools[$i]} (Debian package ${missing_packages[$i]})"
  done
}

if [ "$check_only" = true ] || [ "$(id -u)" -ne 0 ]; then
  echo "ensure-tools: these tools are missing and this run cannot install them:" >&2
  describe >&2
  echo "Install them with: sudo apt-get install -y ${missing_packages[*]}" >&2
  exit 1
fi

echo "ensure-tools: installing ${missing_packages[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing_packages[@]}" >/dev/null
for tool in "${missing_tools[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "ensure-tools: $tool is still missing after installing its package" >&2
    exit 1
  fi
done
