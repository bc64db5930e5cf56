#!/usr/bin/env bash
# Approves kubelet serving-certificate requests (signer kubernetes.io/kubelet-serving) that a
# Node of this cluster made for itself and for nothing else; leaves every other request pending.
# Run by the kubelet-csr-approver Deployment on a control-plane node
# (components/addons/csrApprover.ts); configured only through environment variables (see --help).
#
# Never prints a secret: no xtrace; a CSR holds a public key and names only, and the script
# prints names and reasons, never the request itself.
set -euo pipefail
umask 077
export LC_ALL=C

readonly SCRIPT_NAME="kubelet-csr-approver"
readonly LOG_TIMESTAMPS=utc
# The project's helper library: beside this script (the ConfigMap, the image), else in the
# repository (scripts/node/lib.sh).
lib="$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -f "$lib" ]] || lib="$(dirname "${BASH_SOURCE[0]}")/../node/lib.sh"
# shellcheck source-path=SCRIPTDIR source=../node/lib.sh
source "$lib"

usage() {
  cat <<'EOF'
Usage: kubelet-csr-approver.sh [--help]

Every APPROVER_INTERVAL_SECONDS, reads the cluster's Nodes and CertificateSigningRequests
(`kubectl get nodes -o json`, `kubectl get csr -o json`) and approves
(`kubectl certificate approve NAME`) a request only when ALL of these hold:
  - spec.signerName is kubernetes.io/kubelet-serving;
  - it has no condition yet (not approved, denied or failed) and no certificate;
  - spec.username is system:node:<name> and spec.groups holds system:nodes, where <name> is
    the name of a Node that exists in the cluster;
  - the request (PEM, self-signature verified by openssl) has the subject exactly
    CN=system:node:<name>, O=system:nodes;
  - spec.usages is exactly {digital signature, server auth}, optionally with key encipherment;
  - it has one subjectAltName extension with at least one name, only DNS names and IP
    addresses: each DNS name is an address of type Hostname, InternalDNS or ExternalDNS in
    that Node's status, each IP an address of type InternalIP or ExternalIP (IPv6 compared
    in canonical form).
Anything else stays pending and is reported once (per run of this script) with the reason;
nothing is ever denied: a request made before the Node's addresses are known (the cloud
controller manager sets them after the kubelet registers) is approved on a later pass, and
kube-controller-manager removes pending requests after 24 hours.

Configured only through environment variables:

  APPROVER_INTERVAL_SECONDS  Pause between two passes (default 20; 1..3600).
  APPROVER_PASSES            Passes to run before exiting 0 (default 0: run until stopped).
  KUBECTL_TIMEOUT            Seconds one kubectl call may take (default 30; 1..600).
  APPROVER_HEARTBEAT_FILE    Touched after every pass, whatever its outcome (default
                             /tmp/kubelet-csr-approver.heartbeat; the liveness probe reads it).

kubectl uses its in-cluster configuration (the pod's ServiceAccount) or KUBECONFIG.

Tools: bash, coreutils (timeout, base64, mktemp, touch), kubectl, jq, openssl, awk, grep.

Output: on stderr, one line per approval (`approved <csr> for node <name>`) and one per request
left pending (`leaving <csr> pending: <reason>`), with a UTC timestamp.
Exit status: 0 after APPROVER_PASSES passes; 1 a tool is missing; 2 configuration error. A pass
that cannot read the cluster is reported and retried on the next pass.
EOF
}

no_arguments "$@"

APPROVER_INTERVAL_SECONDS="${APPROVER_INTERVAL_SECONDS:-20}"
APPROVER_PASSES="${APPROVER_PASSES:-0}"
KUBECTL_TIMEOUT="${KUBECTL_TIMEOUT:-30}"
APPROVER_HEARTBEAT_FILE="${APPROVER_HEARTBEAT_FILE:-/tmp/kubelet-csr-approver.heartbeat}"
require_int APPROVER_INTERVAL_SECONDS 1 3600
require_int APPROVER_PASSES 0
require_int KUBECTL_TIMEOUT 1 600
# `bounded` limits every kubectl call to this.
timeout_seconds="$KUBECTL_TIMEOUT"
require_tools kubectl jq openssl base64 timeout awk grep

readonly signer="kubernetes.io/kubelet-serving"
# spec.usages, sorted and joined by ",", that a kubelet asks for: ECDSA keys (the kubelet's
# default) give digital signature + server auth; RSA keys add key encipherment
# (k8s.io/kubernetes pkg/kubelet/certificate/kubelet.go, and the signer's own rule
# IsKubeletServingCSR in pkg/apis/certificates/v1/helpers.go accepts these and no others).
readonly allowed_usages=("digital signature,server auth" "digital signature,key encipherment,server auth")

work="$(mktemp -d)"
remove_work() { rm -rf -- "$work"; }
cleanup_on_exit remove_work

# Requests already reported as left pending, so a bad request is logged once, not every pass.
declare -A reported=()

# canonical_ip ADDRESS: IPv4 as it is; IPv6 as 8 lower-case groups without leading zeros
# (openssl prints 2001:DB8:0:0:0:0:0:1, a Node 2001:db8::1). Returns 1 for anything else.
canonical_ip() {
  local ip="$1" head tail group out=() missing i
  if [[ "$ip" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]]; then
    for i in 1 2 3 4; do ((10#${BASH_REMATCH[i]} <= 255)) || return 1; done
    printf '%d.%d.%d.%d' "$((10#${BASH_REMATCH[1]}))" "$((10#${BASH_REMATCH[2]}))" \
      "$((10#${BASH_REMATCH[3]}))" "$((10#${BASH_REMATCH[4]}))"
    return 0
  fi
  [[ "$ip" =~ ^[0-9A-Fa-f:]+$ && "$ip" == *:* ]] || return 1
  if [[ "$ip" == *::* ]]; then
    head="${ip%%::*}" tail="${ip#*::}"
    [[ "$tail" != *::* ]] || return 1
  else
    head="$ip" tail=""
  fi
  local -a head_groups=() tail_groups=()
  [[ -z "$head" ]] || IFS=: read -r -a head_groups <<<"$head"
  [[ -z "$tail" ]] || IFS=: read -r -a tail_groups <<<"$tail"
  if [[ "$ip" == *::* ]]; then
    missing=$((8 - ${#head_groups[@]} - ${#tail_groups[@]}))
    ((missing >= 1)) || return 1
  else
    missing=0
    ((${#head_groups[@]} == 8)) || return 1
  fi
  for group in "${head_groups[@]}"; do out+=("$group"); done
  for ((i = 0; i < missing; i++)); do out+=(0); done
  for group in "${tail_groups[@]}"; do out+=("$group"); done
  for i in "${!out[@]}"; do
    [[ "${out[i]}" =~ ^[0-9A-Fa-f]{1,4}$ ]] || return 1
    printf -v "out[i]" '%x' "$((16#${out[i]}))"
  done
  (IFS=:; printf '%s' "${out[*]}")
}

# node_addresses NODE TYPE...: the addresses of those types in NODE's status, one a line.
node_addresses() {
  local node="$1"
  shift
  jq -r --arg node "$node" --args \
    '.items[] | select(.metadata.name == $node) | (.status.addresses // [])[] | select(.type | IN($ARGS.positional[])) | .address' \
    "$@" <"$work/nodes.json"
}

# check_request NAME USERNAME GROUPS USAGES REQUEST: prints why the request must stay pending
# and returns 1; returns 0 (printing the node's name) when it may be approved.
check_request() {
  local name="$1" username="$2" groups="$3" usages="$4" request="$5"
  local node pem="$work/request.pem" subject sans entry kind value count parsed=0 ok usage
  local -A dns_allowed=() ip_allowed=()
  if [[ "$username" != system:node:* ]]; then
    echo "requester '${username}' is not a node"
    return 1
  fi
  node="${username#system:node:}"
  if [[ ! "$node" =~ ^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$ ]]; then
    echo "requester '${username}' names no valid node"
    return 1
  fi
  if [[ ",${groups}," != *,system:nodes,* ]]; then
    echo "requester ${username} is not in the group system:nodes"
    return 1
  fi
  if [[ -z "$(jq -r --arg node "$node" '.items[] | select(.metadata.name == $node) | .metadata.name' <"$work/nodes.json")" ]]; then
    echo "no Node ${node} in this cluster"
    return 1
  fi
  ok=false
  for usage in "${allowed_usages[@]}"; do
    if [[ "$usages" == "$usage" ]]; then ok=true; fi
  done
  if ! "$ok"; then
    echo "usages '${usages}' are not {digital signature, server auth} (+ key encipherment)"
    return 1
  fi
  if ! printf '%s' "$request" | base64 -d >"$pem" 2>/dev/null; then
    echo "spec.request is not base64"
    return 1
  fi
  # OpenSSL 3.0 exits 0 even when the signature does not verify (it prints "Certificate request
  # self-signature verify failure"), so the message decides, not only the status.
  local verified
  if ! verified="$(openssl req -in "$pem" -noout -verify 2>&1)" ||
    [[ ! "$verified" =~ (^|$'\n')(Certificate\ request\ self-signature\ )?verify\ OK($|$'\n') ]]; then
    echo "spec.request is not a PEM certificate request with a valid self-signature"
    return 1
  fi
  subject="$(openssl req -in "$pem" -noout -subject -nameopt RFC2253)"
  if [[ "$subject" != "subject=CN=system:node:${node},O=system:nodes" ]]; then
    echo "subject '${subject#subject=}' is not CN=system:node:${node},O=system:nodes"
    return 1
  fi
  # The names, as openssl prints them ("DNS:a, IP Address:10.0.0.1") ...
  sans="$(openssl req -in "$pem" -noout -text | awk '
    /X509v3 Subject Alternative Name:/ { getline; sub(/^[ \t]+/, ""); print; found++ }
    END { if (found != 1) exit 1 }')" || {
    echo "not exactly one subjectAltName extension"
    return 1
  }
  # ... and how many GeneralNames the extension really holds: a DNS name with ", " inside would
  # otherwise read as two names.
  local offset
  offset="$(openssl asn1parse -in "$pem" | awk '/:X509v3 Subject Alternative Name/ { getline; sub(/:.*/, ""); print $1 }')"
  count="$(openssl asn1parse -in "$pem" -strparse "$offset" | grep -c '^ *[0-9]*:d=1 ')" || count=0
  while IFS= read -r value; do dns_allowed["$value"]=1; done < <(node_addresses "$node" Hostname InternalDNS ExternalDNS)
  while IFS= read -r value; do
    if value="$(canonical_ip "$value")"; then ip_allowed["$value"]=1; fi
  done < <(node_addresses "$node" InternalIP ExternalIP)
  local -a entries=()
  IFS=, read -r -a entries <<<"$sans"
  for entry in "${entries[@]}"; do
    entry="${entry# }"
    kind="${entry%%:*}" value="${entry#*:}"
    parsed=$((parsed + 1))
    case "$kind" in
      DNS)
        if [[ -z "${dns_allowed[$value]+set}" ]]; then
          echo "DNS name '${value}' is not a name of Node ${node}"
          return 1
        fi
        ;;
      "IP Address")
        if ! value="$(canonical_ip "$value")" || [[ -z "${ip_allowed[$value]+set}" ]]; then
          echo "IP address '${entry#*:}' is not an address of Node ${node}"
          return 1
        fi
        ;;
      *)
        echo "subjectAltName '${kind}' is neither a DNS name nor an IP address"
        return 1
        ;;
    esac
  done
  if ((parsed == 0 || parsed != count)); then
    echo "subjectAltName holds ${count} names, ${parsed} read"
    return 1
  fi
  printf '%s' "$node"
}

# one_pass: reads the cluster once and approves what passes check_request. Returns 1 when the
# cluster could not be read.
one_pass() {
  local name username groups usages request verdict
  if ! bounded kubectl get nodes -o json >"$work/nodes.json" 2>"$work/kubectl.log"; then
    log "cannot list Nodes; retrying next pass"
    show_log "$work/kubectl.log"
    return 1
  fi
  if ! bounded kubectl get csr -o json >"$work/csrs.json" 2>"$work/kubectl.log"; then
    log "cannot list CertificateSigningRequests; retrying next pass"
    show_log "$work/kubectl.log"
    return 1
  fi
  # Fields joined by the unit separator (0x1f); jq turns every control character inside a value
  # into '?'. Not tabs: a whitespace IFS character lets an empty field vanish and shifts the rest.
  while IFS=$'\x1f' read -r name username groups usages request; do
    if verdict="$(check_request "$name" "$username" "$groups" "$usages" "$request")"; then
      if bounded kubectl certificate approve "$name" </dev/null >"$work/kubectl.log" 2>&1; then
        log "approved ${name} for node ${verdict}"
      else
        log "approving ${name} failed; retrying next pass"
        show_log "$work/kubectl.log"
      fi
    elif [[ -z "${reported[$name]+set}" ]]; then
      reported["$name"]=1
      log "leaving ${name} pending: ${verdict}"
    fi
  done < <(jq -r --arg signer "$signer" '
    .items[]
    | select(.spec.signerName == $signer)
    | select(((.status.conditions // []) | length) == 0 and ((.status.certificate // "") == ""))
    | [.metadata.name, .spec.username, ((.spec.groups // []) | join(",")),
       ((.spec.usages // []) | unique | join(",")), .spec.request]
    | map(gsub("[[:cntrl:]]"; "?"))
    | join("\u001f")' <"$work/csrs.json")
}

pass=0
while true; do
  one_pass || true
  # Every call in a pass is bounded, so a heartbeat older than a few passes means a stuck loop.
  touch -- "$APPROVER_HEARTBEAT_FILE"
  pass=$((pass + 1))
  if ((APPROVER_PASSES > 0 && pass >= APPROVER_PASSES)); then break; fi
  sleep "$APPROVER_INTERVAL_SECONDS"
done
