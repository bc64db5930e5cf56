#!/usr/bin/env bash
# Prepares an Ubuntu 24.04 host to become a kubeadm node: swap off, kernel modules and sysctls,
# containerd with the systemd cgroup driver and kubeadm's pause image, kubeadm/kubelet/kubectl pinned
# from pkgs.k8s.io.
# cloud-init runs it once at first boot (components/node/cloudInit.ts); it is safe to run again by hand.
set -euo pipefail

readonly SCRIPT_NAME="prepare-kubernetes-node"

usage() {
  cat <<'EOF'
Usage: prepare-kubernetes-node.sh --kubernetes-version X.Y.Z --package-version X.Y.Z-R
                                  --channel vX.Y --pause-image IMAGE [--root DIR]

Prepares an Ubuntu 24.04 host for kubeadm init/join. Run as root.

Options:
  --kubernetes-version X.Y.Z  Kubernetes version of the node, e.g. 1.34.2. Required.
  --package-version X.Y.Z-R   apt version of kubeadm, kubelet and kubectl on pkgs.k8s.io,
                              e.g. 1.34.2-1.1. Must start with the Kubernetes version. Required.
  --channel vX.Y              pkgs.k8s.io repository channel, e.g. v1.34. Must match the
                              Kubernetes minor version. Required.
  --pause-image IMAGE         The pause image kubeadm of this version expects, e.g.
                              registry.k8s.io/pause:3.10.1 for 1.34 (components/versions.ts
                              pauseImage). containerd runs pod sandboxes from it. Required.
  --root DIR                  Prefix for every file this script reads or writes (default: $ROOT,
                              else empty, meaning /). For tests; commands still act on this host.
  -h, --help                  Show this help and exit.

Environment:
  ROOT                 Same as --root; the flag wins.
  RETRY_ATTEMPTS       Attempts per apt-get call before giving up (default 10).
  RETRY_SLEEP_SECONDS  Seconds to wait between attempts (default 15).

Steps, each safe to repeat:
  1. swapoff -a, and comment out swap entries in /etc/fstab;
  2. modprobe overlay and br_netfilter; sysctl --system, then check the three sysctls are 1
     (cloud-init writes /etc/modules-load.d/kubernetes.conf and /etc/sysctl.d/90-kubernetes.conf);
  3. /etc/containerd/config.toml from `containerd config default` with SystemdCgroup = true
     and the sandbox image set to --pause-image, containerd enabled and restarted. The key
     depends on the config version containerd prints: version 2 (containerd 1.7, Ubuntu
     24.04's) has sandbox_image in [plugins."io.containerd.grpc.v1.cri"], version 3
     (containerd 2.x) has sandbox in [plugins.'io.containerd.cri.v1.images'.pinned_images].
     Any other version, or the key not exactly once in its table, is refused (exit 1):
     containerd's own default (pause 3.8 in 1.7) would make kubeadm's preflight warn and
     every node hold two pause images;
  4. the pkgs.k8s.io apt repository for the channel, key in
     /etc/apt/keyrings/kubernetes-apt-keyring.gpg;
  5. kubeadm, kubelet and kubectl at exactly the package version (never a downgrade), then
     apt-mark hold kubeadm kubelet kubectl containerd, and kubelet enabled;
  6. /var/log/kubernetes/audit (0700) for the API server audit log;
  7. the sentinel /var/lib/kubernetes-node/prepared holding the package version.
A run that finds the sentinel with the same version exits 0 at once; with another version it
refuses (exit 1): upgrades follow the kubeadm upgrade procedure, not this script.
So a node prepared before --pause-image existed keeps containerd's default sandbox image: set
the key above in /etc/containerd/config.toml by hand and `systemctl restart containerd` (running
containers keep running), one node at a time.

Exit status: 0 prepared, 1 a step failed, 2 usage error.
EOF
}

log() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage_error() { log "usage error: $*"; log "see --help"; exit 2; }

kubernetes_version=""
package_version=""
channel=""
pause_image=""
ROOT="${ROOT:-}"
RETRY_ATTEMPTS="${RETRY_ATTEMPTS:-10}"
RETRY_SLEEP_SECONDS="${RETRY_SLEEP_SECONDS:-15}"

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --kubernetes-version | --package-version | --channel | --pause-image | --root)
        [[ $# -ge 2 ]] || usage_error "$1 needs a value"
        case "$1" in
          --kubernetes-version) kubernetes_version="$2" ;;
          --package-version) package_version="$2" ;;
          --channel) channel="$2" ;;
          --pause-image) pause_image="$2" ;;
          --root) ROOT="$2" ;;
        esac
        shift 2
        ;;
      -h | --help) usage; exit 0 ;;
      *) usage_error "unknown argument '$1'" ;;
    esac
  done

  [[ "$kubernetes_version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
    usage_error "--kubernetes-version must look like 1.34.2, got '${kubernetes_version}'"
  [[ "$package_version" =~ ^[0-9]+\.[0-9]+\.[0-9]+-[0-9A-Za-z.+~]+$ &&
    "$package_version" == "${kubernetes_version}-"* ]] ||
    usage_error "--package-version must look like ${kubernetes_version}-1.1, got '${package_version}'"
  [[ "$channel" == "v${kubernetes_version%.*}" ]] ||
    usage_error "--channel must be v${kubernetes_version%.*} for ${kubernetes_version}, got '${channel}'"
  # registry[:port]/path:tag, nothing a TOML string would need escaped.
  [[ "$pause_image" =~ ^[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] ||
    usage_error "--pause-image must look like registry.k8s.io/pause:3.10.1, got '${pause_image}'"
  [[ "$RETRY_ATTEMPTS" =~ ^[1-9][0-9]*$ ]] ||
    usage_error "RETRY_ATTEMPTS must be a positive integer, got '${RETRY_ATTEMPTS}'"
  [[ "$RETRY_SLEEP_SECONDS" =~ ^[0-9]+$ ]] ||
    usage_error "RETRY_SLEEP_SECONDS must be a whole number of seconds, got '${RETRY_SLEEP_SECONDS}'"
  ROOT="${ROOT%/}"
  [[ -z "$ROOT" || -d "$ROOT" ]] || usage_error "--root '${ROOT}' is not a directory"
}

# Runs a command up to RETRY_ATTEMPTS times, RETRY_SLEEP_SECONDS apart (apt races
# unattended-upgrades for its lock on first boot).
retry() {
  local attempt
  for attempt in $(seq 1 "$RETRY_ATTEMPTS"); do
    if "$@"; then
      return 0
    fi
    log "attempt ${attempt}/${RETRY_ATTEMPTS} failed: $*"
    if [[ "$attempt" -lt "$RETRY_ATTEMPTS" ]]; then
      sleep "$RETRY_SLEEP_SECONDS"
    fi
  done
  log "giving up after ${RETRY_ATTEMPTS} attempts: $*"
  return 1
}

# A half-written file never replaces a good one: write_file stages next to the target and
# renames; the EXIT trap removes a staged file a failure left behind.
staged=""
cleanup() { if [[ -n "$staged" ]]; then rm -f -- "$staged"; fi; }
trap cleanup EXIT

# Writes stdin to FILE with MODE, atomically.
write_file() {
  local mode="$1" file="$2"
  staged="$(mktemp "${file}.XXXXXX")"
  cat >"$staged"
  chmod "$mode" "$staged"
  mv -f -- "$staged" "$file"
  staged=""
}

require_commands() {
  local command_name
  for command_name in "$@"; do
    command -v "$command_name" >/dev/null ||
      die "'${command_name}' not found on PATH (cloud-init installs containerd, curl and gpg)"
  done
}

disable_swap() {
  local fstab="${ROOT}/etc/fstab"
  # An uncommented entry whose third field (type) is swap.
  local swap_entry='^[[:space:]]*[^#[:space:]][^[:space:]]*[[:space:]]+[^[:space:]]+[[:space:]]+swap([[:space:]]|$)'
  swapoff -a
  if [[ -f "$fstab" ]] && grep -Eq "$swap_entry" "$fstab"; then
    log "commenting out swap entries in ${fstab}"
    sed -E -i "/${swap_entry}/ s/^/# disabled for kubelet: /" "$fstab"
  fi
}

load_kernel_modules() {
  local module
  # One module per call: `modprobe overlay br_netfilter` would pass br_netfilter as a parameter.
  for module in overlay br_netfilter; do
    modprobe "$module"
  done
}

apply_sysctls() {
  local key value
  sysctl --system >/dev/null
  for key in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables; do
    value="$(sysctl -n "$key")"
    [[ "$value" == "1" ]] ||
      die "sysctl ${key} is '${value}', want 1; is /etc/sysctl.d/90-kubernetes.conf in place?"
  done
}

# with_sandbox_image IMAGE: prints stdin, a containerd config, with the CRI sandbox image set to
# IMAGE in the table and key of the config's `version` (see --help). Fails, naming the reason,
# on any other version or when the key is not exactly once in its table.
with_sandbox_image() {
  local image="$1" config version table key value line header="" found=0
  config="$(cat)"
  version="$(sed -nE 's/^version[[:space:]]*=[[:space:]]*([0-9]+)[[:space:]]*$/\1/p' <<<"$config")"
  case "$version" in
    2) table='[plugins."io.containerd.grpc.v1.cri"]' key="sandbox_image" value="\"${image}\"" ;;
    3) table="[plugins.'io.containerd.cri.v1.images'.pinned_images]" key="sandbox" value="'${image}'" ;;
    *)
      log "error: containerd config version '${version}' is neither 2 (containerd 1.7) nor 3 (containerd 2.x)"
      return 1
      ;;
  esac
  while IFS= read -r line; do
    if [[ "$line" =~ ^[[:space:]]*(\[.*\])[[:space:]]*$ ]]; then header="${BASH_REMATCH[1]}"; fi
    if [[ "$header" == "$table" && "$line" =~ ^([[:space:]]*)${key}[[:space:]]*= ]]; then
      line="${BASH_REMATCH[1]}${key} = ${value}"
      found=$((found + 1))
    fi
    printf '%s\n' "$line"
  done <<<"$config"
  if [[ "$found" -ne 1 ]]; then
    log "error: containerd config version ${version} has ${found} '${key}' keys in ${table}, expected 1"
    return 1
  fi
}

configure_containerd() {
  local default_config config
  default_config="$(containerd config default)"
  config="$(sed -E 's/^([[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*)false/\1true/' <<<"$default_config")"
  grep -Eq '^[[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*true' <<<"$config" ||
    die "'containerd config default' has no SystemdCgroup option to switch on"
  config="$(with_sandbox_image "$pause_image" <<<"$config")" ||
    die "cannot set containerd's sandbox image to ${pause_image} in the output of 'containerd config default'"
  install -d -m 0755 "${ROOT}/etc/containerd"
  write_file 0644 "${ROOT}/etc/containerd/config.toml" <<<"$config"
  systemctl enable containerd
  systemctl restart containerd
}

add_kubernetes_apt_repository() {
  local repository="https://pkgs.k8s.io/core:/stable:/${channel}/deb/"
  local keyring="/etc/apt/keyrings/kubernetes-apt-keyring.gpg"
  local armored_key
  install -d -m 0755 "${ROOT}/etc/apt/keyrings" "${ROOT}/etc/apt/sources.list.d"
  if [[ ! -s "${ROOT}${keyring}" ]]; then
    log "fetching ${repository}Release.key"
    armored_key="$(curl -fsSL --retry 5 --retry-all-errors --retry-delay 2 \
      --connect-timeout 10 --max-time 60 "${repository}Release.key")"
    staged="$(mktemp "${ROOT}${keyring}.XXXXXX")"
    gpg --batch --yes --dearmor --output "$staged" <<<"$armored_key"
    chmod 0644 "$staged"
    mv -f -- "$staged" "${ROOT}${keyring}"
    staged=""
  fi
  write_file 0644 "${ROOT}/etc/apt/sources.list.d/kubernetes.list" \
    <<<"deb [signed-by=${keyring}] ${repository} /"
}

install_kubernetes_packages() {
  # DPkg::Lock::Timeout waits for a running apt (unattended-upgrades) instead of failing at once.
  local apt_get=(apt-get -q -o DPkg::Lock::Timeout=120)
  export DEBIAN_FRONTEND=noninteractive
  retry "${apt_get[@]}" update
  # Exact versions and no --allow-downgrades: apt fails rather than move a node backwards.
  retry "${apt_get[@]}" install -y --no-install-recommends \
    "kubeadm=${package_version}" "kubelet=${package_version}" "kubectl=${package_version}"
  apt-mark hold kubeadm kubelet kubectl containerd
  # kubelet restarts in a loop until kubeadm init/join writes its configuration; that is expected.
  systemctl enable --now kubelet
}

main() {
  parse_args "$@"
  local sentinel="${ROOT}/var/lib/kubernetes-node/prepared"
  local prepared_version
  if [[ -f "$sentinel" ]]; then
    prepared_version="$(<"$sentinel")"
    if [[ "$prepared_version" == "$package_version" ]]; then
      log "already prepared with ${package_version}; nothing to do"
      exit 0
    fi
    die "already prepared with '${prepared_version}', asked for ${package_version}; upgrade with kubeadm upgrade instead"
  fi
  [[ -n "$ROOT" || "$EUID" -eq 0 ]] || die "must run as root"
  require_commands apt-get apt-mark containerd curl gpg modprobe sed swapoff sysctl systemctl

  log "preparing node for Kubernetes ${kubernetes_version} (packages ${package_version}, channel ${channel}, pause image ${pause_image})"
  disable_swap
  load_kernel_modules
  apply_sysctls
  configure_containerd
  add_kubernetes_apt_repository
  install_kubernetes_packages
  install -d -m 0700 "${ROOT}/var/log/kubernetes/audit"
  install -d -m 0755 "${ROOT}/var/lib/kubernetes-node"
  write_file 0644 "$sentinel" <<<"$package_version"
  log "prepared"
}

main "$@"
