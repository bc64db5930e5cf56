#!/usr/bin/env bash
# Upgrades THIS control-plane node to a Kubernetes version with kubeadm: on the first node of the
# upgrade `kubeadm upgrade apply` (role apply), on every other node `kubeadm upgrade node` (role
# node); role auto tells the two apart from the cluster's kubeadm configuration, so no node is
# the first by name. Then a restart of kube-vip (kubeadm renewed the admin.conf it holds), drain,
# kubelet and kubectl packages, kubelet restart, uncordon, with the API server and etcd health
# gates before and after. Pulumi runs it over SSH with --role auto, one node at a time, after
# upgrade-preflight.sh; every step is safe to repeat, and a node already at the version only
# checks the gates.
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
export LC_ALL=C

readonly SCRIPT_NAME="upgrade-node"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: upgrade-node.sh --role apply|node|auto --version X.Y.Z --package-version X.Y.Z-R
                       --channel vX.Y --node-name NAME [--patches DIR]
                       [--drain-timeout SECONDS] [--timeout SECONDS] [--root DIR]

Upgrades this control-plane node to Kubernetes X.Y.Z. Run as root on the node, after
upgrade-preflight.sh passed, on one control-plane node after the other, each with --role auto
(or by hand: the first with --role apply, then every other with --role node). kubectl uses
/etc/kubernetes/admin.conf.

Options:
  --role apply|node|auto    apply: `kubeadm upgrade apply` (the first node, once per cluster);
                            node: `kubeadm upgrade node` (every other control-plane node);
                            auto: apply or node as the cluster's kubeadm configuration says
                            (step 1a), whichever node runs first. Required.
  --version X.Y.Z           Target Kubernetes version, e.g. 1.35.0. Required.
  --package-version X.Y.Z-R apt version of kubeadm, kubelet and kubectl on pkgs.k8s.io, e.g.
                            1.35.0-1.1. Must start with the version. Required.
  --channel vX.Y            pkgs.k8s.io repository channel, e.g. v1.35. Must match the minor
                            version. Required.
  --node-name NAME          Kubernetes node name of this node (drain, uncordon, etcd-NAME).
                            Required.
  --patches DIR             kubeadm patches directory, passed to kubeadm upgrade as --patches
                            (default /etc/kubernetes/kubeadm-patches, as at init and join).
  --drain-timeout SECONDS   kubectl drain --timeout (default 600).
  --timeout SECONDS         Longest wait for each gate, for the node to be Ready at the
                            version, and for the uncordon (default 600).
  --root DIR                Prefix for every file this script reads or writes (default: $ROOT,
                            else empty, meaning /). For tests; commands still act on this host.
  -h, --help                Show this help and exit.

Environment:
  ROOT          Same as --root; the flag wins.
  POLL_SECONDS  Pause between checks (default 5; may be fractional, e.g. 0.1).

Steps (each safe to repeat; a re-run resumes after the last step that took effect):
  0. already done? The packages kubeadm, kubelet and kubectl (dpkg-query) are at the package
     version, /etc/kubernetes/manifests/kube-apiserver.yaml runs image tag vX.Y.Z, and the
     sentinel /var/lib/kubernetes-node/prepared holds the package version: then only the gates
     (1) run, and the Node must report kubelet vX.Y.Z and be schedulable (not cordoned); exit 0.
     A Node that is not Ready is only a warning here: on a new cluster this runs before the
     pod network is installed, and Pulumi installs it after this command;
  1. gate: /readyz answers ok and `etcdctl endpoint health --cluster` passes in etcd-NAME;
  1a. role auto: the kubernetesVersion of the ClusterConfiguration in ConfigMap
      kube-system/kubeadm-config, read with admin.conf (retried up to the timeout). `kubeadm
      upgrade apply` writes the target version there (its upload-config phase, after it
      upgraded its own node's control plane); `kubeadm upgrade node` only reads it. Below
      X.Y.Z: no node has applied this upgrade yet, this one runs apply; at X.Y.Z: node; above
      X.Y.Z: refused (no downgrades). A ConfigMap that cannot be read, or holds no
      ClusterConfiguration naming a kubernetesVersion x.y.z, is refused: the role is never
      guessed. The decision is logged. Nothing was changed yet;
  2. /etc/apt/sources.list.d/kubernetes.list points at the channel (the keyring
     /etc/apt/keyrings/kubernetes-apt-keyring.gpg stays), apt-get update, kubeadm unheld,
     installed at exactly the package version (never a downgrade) and held again; then
     `kubeadm version -o short` must print vX.Y.Z;
  3. apply: `kubeadm upgrade plan vX.Y.Z`, `kubeadm upgrade apply vX.Y.Z --yes --patches DIR`;
     node: `kubeadm upgrade node --patches DIR`. Skipped when this node's kube-apiserver
     manifest already runs vX.Y.Z (a re-run after a later step failed), except with role auto
     while the cluster is still below X.Y.Z: then an earlier apply stopped between this node's
     control plane and its upload-config phase, and runs again (kubeadm leaves manifests that
     are already current alone). Afterwards the manifest must run vX.Y.Z. kubeadm renews the
     certificates, admin.conf's included, and restarts the static pods it manages
     (kube-apiserver, kube-controller-manager, kube-scheduler, etcd);
  4. kube-vip: it read admin.conf when it started, and with the old client certificate it could
     not renew its Lease once that expires. Move /etc/kubernetes/manifests/kube-vip.yaml to
     /etc/kubernetes/manifests-parked/, wait until `crictl ps --name ^kube-vip$ -q` lists no
     container, move it back, wait until it lists one, then gate as in 1 and wait until some
     kube-vip renewed the Lease named in the manifest (vip_leasename) after the restart (a
     failure puts the manifest back). Skipped when this node has no kube-vip manifest, or when the sentinel
     /var/lib/kubernetes-node/kube-vip-admin-conf shows kube-vip was restarted with this
     admin.conf's client certificate already (a re-run); its fingerprint is written there after
     the gate. The kubelet needs no such restart: its client certificate is its own, rotated by
     the kubelet, and kubeadm does not renew it;
  5. kubectl drain NAME --ignore-daemonsets --delete-emptydir-data --timeout=<drain-timeout>s;
  6. kubelet and kubectl unheld, installed at the package version, held; systemctl
     daemon-reload, systemctl restart kubelet;
  7. wait until the Node NAME is Ready and reports kubelet vX.Y.Z;
  8. kubectl uncordon NAME;
  9. the sentinel /var/lib/kubernetes-node/prepared holds the package version;
  10. gate again, as in 1.
kubeadm, kubectl, crictl, apt and systemctl output goes to the root-only log
/var/log/hcloud-control-plane/upgrade-node.log (0600), never to the terminal.
A failure prints "upgrade of NAME failed at <step>: ..."; from the drain until the uncordon the
node is left cordoned on purpose and the message says so. Fix the cause and run the same
command again (`pulumi up`): it resumes.

Exit status: 0 upgraded (or already at the version), 1 a step failed or timed out, 2 usage
error.
EOF
}

readonly KEYRING="/etc/apt/keyrings/kubernetes-apt-keyring.gpg"
readonly SOURCES_LIST="/etc/apt/sources.list.d/kubernetes.list"
readonly SENTINEL="/var/lib/kubernetes-node/prepared"
readonly APISERVER_MANIFEST="/etc/kubernetes/manifests/kube-apiserver.yaml"
readonly ADMIN_CONF="/etc/kubernetes/admin.conf"
readonly KUBEADM_CONFIG="ConfigMap kube-system/kubeadm-config"
# shellcheck disable=SC2016 # jsonpath, not shell
readonly NODE_JSONPATH='{.status.conditions[?(@.type=="Ready")].status}|{.status.nodeInfo.kubeletVersion}|{.spec.unschedulable}'

role=""
target=""
package_version=""
channel=""
node_name=""
patches="/etc/kubernetes/kubeadm-patches"
drain_timeout="600"
timeout_seconds="600"
ROOT="${ROOT:-}"
POLL_SECONDS="${POLL_SECONDS:-5}"

parse_args() {
  parse_flags --role=role --version=target --package-version=package_version --channel=channel \
    --node-name=node_name --patches=patches --drain-timeout=drain_timeout \
    --timeout=timeout_seconds --root=ROOT -- "$@"

  [[ "$role" == apply || "$role" == node || "$role" == auto ]] ||
    usage_error "--role must be apply, node or auto, got '${role}'"
  [[ "$target" =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$ ]] ||
    usage_error "--version must look like 1.35.0 (no v prefix), got '${target}'"
  [[ "$package_version" =~ ^[0-9]+\.[0-9]+\.[0-9]+-[0-9A-Za-z.+~]+$ &&
    "$package_version" == "${target}-"* ]] ||
    usage_error "--package-version must look like ${target}-1.1, got '${package_version}'"
  [[ "$channel" == "v${target%.*}" ]] ||
    usage_error "--channel must be v${target%.*} for ${target}, got '${channel}'"
  is_dns_name "$node_name" || usage_error "--node-name must be a lowercase DNS name, got '${node_name}'"
  [[ "$patches" == /* ]] || usage_error "--patches must be an absolute path, got '${patches}'"
  [[ "$drain_timeout" =~ ^[1-9][0-9]*$ ]] ||
    usage_error "--drain-timeout must be a positive whole number of seconds, got '${drain_timeout}'"
  check_timeout
  check_poll_seconds
  check_root_dir
}

# ---------------------------------------------------------------------------------------------
# Failures name the node and the step; from the drain until the uncordon they say the node is
# left cordoned. The EXIT trap reports an unexpected exit (set -e, a signal) the same way.

step=""
cordoned=false
reported=false
fail() {
  local message="upgrade of ${node_name} failed at ${step}: $*"
  if "$cordoned"; then
    message+="; ${node_name} is left cordoned on purpose: fix the cause, then run the same command again (pulumi up), which resumes; 'kubectl uncordon ${node_name}' puts it back into service by hand"
  fi
  reported=true
  die "$message"
}

on_exit() {
  local status=$?
  restore_parked_static_pod
  remove_staged
  if ((status != 0)) && [[ -n "$step" ]] && ! "$reported"; then
    local message="upgrade of ${node_name} failed at ${step} (exit status ${status})"
    if "$cordoned"; then message+="; ${node_name} is left cordoned on purpose"; fi
    log "error: ${message}${log_file:+; see ${log_file}}"
  fi
}
cleanup_on_exit on_exit

# ---------------------------------------------------------------------------------------------
# State of this node.

# installed_version PACKAGE: the installed version of PACKAGE, or nothing.
installed_version() {
  dpkg-query -W -f='${Version}' "$1" 2>>"$log_file" || true
}

# packages_at_target PACKAGE...: every PACKAGE is installed at the package version.
packages_at_target() {
  local package
  for package in "$@"; do
    [[ "$(installed_version "$package")" == "$package_version" ]] || return 1
  done
}

# manifest_tag: the image tag of this node's kube-apiserver static pod manifest
# (registry.k8s.io/kube-apiserver:v1.34.2 -> v1.34.2), or nothing.
manifest_tag() {
  local manifest="${ROOT}${APISERVER_MANIFEST}" line image
  [[ -f "$manifest" ]] || return 0
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ "$line" =~ ^[[:space:]]*(-[[:space:]]+)?image:[[:space:]]*[\"\']?([^\"\'[:space:]]*kube-apiserver[^\"\'[:space:]]*) ]]; then
      image="${BASH_REMATCH[2]%%@*}"
      image="${image##*/}"
      if [[ "$image" == *:* ]]; then printf '%s' "${image##*:}"; fi
      return 0
    fi
  done <"$manifest"
}

sentinel_version() {
  if [[ -f "${ROOT}${SENTINEL}" ]]; then printf '%s' "$(<"${ROOT}${SENTINEL}")"; fi
}

# ---------------------------------------------------------------------------------------------
# Cluster checks, each one attempt for wait_for.

kubeconfig=""
node_state=""
# node_at_target: the Node's kubelet reports vX.Y.Z; node_state keeps the last answer
# ("<Ready status>|<kubelet version>|<unschedulable>", each maybe empty).
node_at_target() {
  local version
  node_state="$(bounded kubectl --kubeconfig "$kubeconfig" get node "$node_name" \
    -o "jsonpath=${NODE_JSONPATH}" 2>>"$log_file")" || return 1
  IFS='|' read -r _ version _ <<<"$node_state"
  [[ "$version" == "v${target}" ]]
}

# node_ready_at_target: the same, and the Node is Ready.
node_ready_at_target() {
  local ready
  node_at_target || return 1
  IFS='|' read -r ready _ <<<"$node_state"
  [[ "$ready" == True ]]
}

node_uncordoned() {
  bounded kubectl --kubeconfig "$kubeconfig" uncordon "$node_name" >>"$log_file" 2>&1
}

gates() {
  log "waiting up to ${timeout_seconds}s each for the API server to report ready and a healthy etcd cluster (etcd-${node_name})"
  wait_for_control_plane "$kubeconfig" "$node_name" fail
}

# ---------------------------------------------------------------------------------------------
# Role auto: apply or node, from the version the cluster's kubeadm configuration names.
# kubeadm init's upload-config phase writes the ClusterConfiguration, as YAML, under the key
# ClusterConfiguration of ConfigMap kube-system/kubeadm-config (UploadConfiguration in
# cmd/kubeadm/app/phases/uploadconfig/uploadconfig.go, kubernetes/kubernetes).
# `kubeadm upgrade apply` sets its kubernetesVersion to the target (newApplyData in
# cmd/kubeadm/app/cmd/upgrade/apply.go) and uploads it again in its upload-config phase, which
# runs after its control-plane phase; `kubeadm upgrade node` has no upload-config phase
# (NewCmdNode in cmd/kubeadm/app/cmd/upgrade/node.go) and only reads the ConfigMap.

# read_cluster_configuration: sets cluster_configuration to the ClusterConfiguration document of
# the ConfigMap (kubectl's jsonpath prints a missing key as nothing); one bounded attempt for
# wait_for. kubectl's errors go to the log.
cluster_configuration=""
read_cluster_configuration() {
  cluster_configuration="$(bounded kubectl --kubeconfig "$kubeconfig" -n kube-system get configmap \
    kubeadm-config -o 'jsonpath={.data.ClusterConfiguration}' 2>>"$log_file")"
}

# cluster_version: prints the kubernetesVersion (vX.Y.Z) of cluster_configuration; status 1
# unless it is a ClusterConfiguration with exactly one top-level kubernetesVersion x.y.z.
cluster_version() {
  local line kind=false found=()
  while IFS= read -r line; do
    if [[ "$line" == "kind: ClusterConfiguration" ]]; then kind=true; fi
    if [[ "$line" =~ ^kubernetesVersion:[[:space:]]*(.*)$ ]]; then found+=("${BASH_REMATCH[1]}"); fi
  done <<<"$cluster_configuration"
  "$kind" && ((${#found[@]} == 1)) &&
    [[ "${found[0]}" =~ ^v?((0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*))$ ]] || return 1
  printf 'v%s' "${BASH_REMATCH[1]}"
}

# compare_versions A B: prints -1, 0 or 1 as A is below, at or above B (each X.Y.Z, maybe with a v).
compare_versions() {
  local -a a b
  local i
  IFS=. read -r -a a <<<"${1#v}"
  IFS=. read -r -a b <<<"${2#v}"
  for i in 0 1 2; do
    if ((10#${a[i]} != 10#${b[i]})); then
      if ((10#${a[i]} < 10#${b[i]})); then echo -1; else echo 1; fi
      return 0
    fi
  done
  echo 0
}

# decide_role: step 1a. For role auto, sets role to apply or node, or fails; logs the decision.
# auto_below_target records that the cluster was below the target (step 3 reads it).
auto_below_target=false
decide_role() {
  [[ "$role" == auto ]] || return 0
  step="role"
  local version
  wait_for read_cluster_configuration ||
    fail "cannot read ${KUBEADM_CONFIG} within ${timeout_seconds}s (kubectl -n kube-system get configmap kubeadm-config); the role is not guessed and nothing was changed; see ${log_file}"
  version="$(cluster_version)" ||
    fail "${KUBEADM_CONFIG} holds no ClusterConfiguration naming a kubernetesVersion x.y.z; the role is not guessed and nothing was changed"
  case "$(compare_versions "$version" "$target")" in
    -1)
      role=apply
      auto_below_target=true
      log "role auto: the cluster's kubeadm configuration (${KUBEADM_CONFIG}) is at ${version}, below ${target}: no node has applied this upgrade yet; ${node_name} runs kubeadm upgrade apply"
      ;;
    0)
      role=node
      log "role auto: the cluster's kubeadm configuration (${KUBEADM_CONFIG}) is at ${version}, the target: kubeadm upgrade apply ran already; ${node_name} runs kubeadm upgrade node"
      ;;
    *)
      fail "the cluster's kubeadm configuration (${KUBEADM_CONFIG}) is at ${version}, newer than the target ${target}; downgrades are not supported; nothing was changed"
      ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# Steps.

apt_get() {
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=120 "$@" >>"$log_file" 2>&1
}

# install_packages PACKAGE...: each PACKAGE at exactly the package version, held; no
# --allow-downgrades, so apt fails rather than move the node backwards.
install_packages() {
  local package
  local -a wanted=()
  for package in "$@"; do wanted+=("${package}=${package_version}"); done
  if packages_at_target "$@"; then
    log "$* already at ${package_version}"
  else
    log "installing ${wanted[*]} (output in ${log_file})"
    apt-mark unhold "$@" >>"$log_file" 2>&1 || fail "apt-mark unhold $* failed; see ${log_file}"
    apt_get install -y --no-install-recommends "${wanted[@]}" ||
      fail "apt-get install ${wanted[*]} failed; see ${log_file}"
  fi
  apt-mark hold "$@" >>"$log_file" 2>&1 || fail "apt-mark hold $* failed; see ${log_file}"
  packages_at_target "$@" || fail "after the install, $* are not all at ${package_version}"
}

switch_repository() {
  step="apt repository"
  local repository="https://pkgs.k8s.io/core:/stable:/${channel}/deb/"
  [[ -s "${ROOT}${KEYRING}" ]] ||
    fail "the pkgs.k8s.io keyring ${KEYRING} is missing (prepare-kubernetes-node.sh writes it)"
  install -d -m 0755 "${ROOT}/etc/apt/sources.list.d"
  write_file 0644 "${ROOT}${SOURCES_LIST}" <<<"deb [signed-by=${KEYRING}] ${repository} /"
  log "apt repository ${repository}; apt-get update (output in ${log_file})"
  apt_get update || fail "apt-get update failed; see ${log_file}"
}

upgrade_kubeadm_package() {
  step="kubeadm package"
  install_packages kubeadm
  local printed
  printed="$(kubeadm version -o short 2>>"$log_file")" || fail "kubeadm version failed; see ${log_file}"
  [[ "$printed" == "v${target}" ]] || fail "kubeadm version -o short printed '${printed}', want v${target}"
}

upgrade_control_plane() {
  local tag
  tag="$(manifest_tag)"
  if [[ "$tag" == "v${target}" ]]; then
    if ! "$auto_below_target"; then
      log "the kube-apiserver manifest already runs ${tag}; kubeadm upgrade ${role} skipped"
      return 0
    fi
    # apply upgraded this node's control plane, then stopped before its upload-config phase.
    log "the kube-apiserver manifest already runs ${tag} but the cluster's kubeadm configuration does not: an earlier kubeadm upgrade apply did not finish; it runs again"
  fi
  if [[ "$role" == apply ]]; then
    step="kubeadm upgrade plan"
    log "running kubeadm upgrade plan v${target} (output in ${log_file})"
    kubeadm upgrade plan "v${target}" >>"$log_file" 2>&1 ||
      fail "kubeadm upgrade plan v${target} failed; see ${log_file}"
    step="kubeadm upgrade apply"
    log "running kubeadm upgrade apply v${target} (output in ${log_file})"
    kubeadm upgrade apply "v${target}" --yes --patches "${ROOT}${patches}" >>"$log_file" 2>&1 ||
      fail "kubeadm upgrade apply v${target} failed; see ${log_file}"
  else
    step="kubeadm upgrade node"
    log "running kubeadm upgrade node (output in ${log_file})"
    kubeadm upgrade node --patches "${ROOT}${patches}" >>"$log_file" 2>&1 ||
      fail "kubeadm upgrade node failed; see ${log_file}"
  fi
  tag="$(manifest_tag)"
  [[ "$tag" == "v${target}" ]] ||
    fail "after kubeadm upgrade ${role}, ${APISERVER_MANIFEST} runs '${tag}', want v${target} (role node needs role apply to have run on the first node)"
}

# restart_kube_vip: step 4, restart_kube_vip_if_stale in lib.sh with this script's gates.
restart_kube_vip() {
  step="kube-vip restart"
  restart_kube_vip_if_stale fail gates
}

drain_node() {
  step="drain"
  log "draining ${node_name}"
  # kubectl drain cordons first: from here until the uncordon a failure leaves the node cordoned.
  cordoned=true
  timeout --kill-after=5 $((drain_timeout + 30)) \
    kubectl --kubeconfig "$kubeconfig" drain "$node_name" --ignore-daemonsets --delete-emptydir-data \
    --timeout="${drain_timeout}s" >>"$log_file" 2>&1 ||
    fail "kubectl drain ${node_name} failed (kubelet and its packages were not touched); see ${log_file}"
}

upgrade_kubelet() {
  step="kubelet package"
  install_packages kubelet kubectl
  step="kubelet restart"
  log "restarting kubelet"
  systemctl daemon-reload >>"$log_file" 2>&1 || fail "systemctl daemon-reload failed; see ${log_file}"
  systemctl restart kubelet >>"$log_file" 2>&1 || fail "systemctl restart kubelet failed; see ${log_file}"
}

wait_node_ready() {
  step="node ready"
  log "waiting up to ${timeout_seconds}s for ${node_name} to be Ready with kubelet v${target}"
  wait_for node_ready_at_target ||
    fail "${node_name} was not Ready with kubelet v${target} within ${timeout_seconds}s (last seen: '${node_state}'); see ${log_file}"
}

uncordon_node() {
  step="uncordon"
  log "uncordoning ${node_name}"
  wait_for node_uncordoned || fail "kubectl uncordon ${node_name} failed for ${timeout_seconds}s; see ${log_file}"
  cordoned=false
}

write_sentinel() {
  step="sentinel"
  install -d -m 0755 "${ROOT}${SENTINEL%/*}"
  write_file 0644 "${ROOT}${SENTINEL}" <<<"$package_version"
}

# already_done: step 0's test, with what differs logged.
already_done() {
  local package have differs=()
  for package in kubeadm kubelet kubectl; do
    have="$(installed_version "$package")"
    if [[ "$have" != "$package_version" ]]; then differs+=("${package} '${have}'"); fi
  done
  have="$(manifest_tag)"
  if [[ "$have" != "v${target}" ]]; then differs+=("kube-apiserver manifest '${have}'"); fi
  have="$(sentinel_version)"
  if [[ "$have" != "$package_version" ]]; then differs+=("sentinel '${have}'"); fi
  if ((${#differs[@]} == 0)); then return 0; fi
  local joined
  printf -v joined '%s, ' "${differs[@]}"
  log "not at ${target} (${package_version}) yet: ${joined%, }"
  return 1
}

main() {
  parse_args "$@"
  require_root
  kubeconfig="${ROOT}${ADMIN_CONF}"
  [[ -f "$kubeconfig" ]] || die "${ADMIN_CONF} not found under '${ROOT:-/}': is this a control-plane node?"
  open_log "--role ${role} --version ${target} --node-name ${node_name}"
  # An interrupted run may have left kube-vip's manifest parked (step 4).
  unpark_static_pod kube-vip

  step="already-done check"
  if already_done; then
    gates
    wait_for node_at_target ||
      fail "${node_name} has the ${target} packages but its Node does not report kubelet v${target} within ${timeout_seconds}s (last seen: '${node_state}'); see ${log_file}"
    local ready unschedulable
    IFS='|' read -r ready _ unschedulable <<<"$node_state"
    [[ "$unschedulable" != true ]] ||
      fail "${node_name} is at ${target} but cordoned; 'kubectl uncordon ${node_name}' when it should serve again"
    if [[ "$ready" != True ]]; then
      log "warning: ${node_name} is not Ready (Ready=${ready:-unknown}); on a new cluster the pod network comes later"
    fi
    log "${node_name} already at ${target}"
    exit 0
  fi
  step="patches directory"
  [[ -d "${ROOT}${patches}" ]] || fail "the kubeadm patches directory ${patches} does not exist"

  step="gate"
  gates
  decide_role
  switch_repository
  upgrade_kubeadm_package
  upgrade_control_plane
  restart_kube_vip
  drain_node
  upgrade_kubelet
  wait_node_ready
  uncordon_node
  write_sentinel
  step="final gate"
  gates
  step=""
  log "${node_name} upgraded to ${target}"
}

main "$@"
