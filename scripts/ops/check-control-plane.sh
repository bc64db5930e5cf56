#!/usr/bin/env bash
# Health check of one region's control plane after `pulumi up` (run by
# .github/workflows/deploy.yml). Passes when, within --timeout:
#   1. the API server answers `kubectl get --raw /readyz` with ok,
#   2. exactly EXPECTED nodes labelled node-role.kubernetes.io/control-plane exist and are Ready,
#   3. etcd `endpoint health --cluster`, run in the etcd pod of a Ready control-plane node with
#      kubeadm's healthcheck-client certificate, reports EXPECTED healthy members.
# Retries every --interval seconds until all three pass at once; every kubectl call is bounded.
# Never prints the kubeconfig (only its path).
#
#   scripts/ops/check-control-plane.sh [--timeout SECONDS] [--interval SECONDS] KUBECONFIG EXPECTED
#
# Exit status: 0 healthy, 1 not healthy within --timeout (the last failures are printed),
# 2 bad arguments.
set -euo pipefail

readonly ETCD_PKI=/etc/kubernetes/pki/etcd
timeout_seconds=600
interval_seconds=10

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
fail_usage() {
  echo "check-control-plane: $*" >&2
  echo "usage: check-control-plane.sh [--timeout SECONDS] [--interval SECONDS] KUBECONFIG EXPECTED" >&2
  exit 2
}

positional=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --timeout)
      [[ $# -ge 2 ]] || fail_usage "--timeout needs a value"
      timeout_seconds="$2"
      shift 2
      ;;
    --interval)
      [[ $# -ge 2 ]] || fail_usage "--interval needs a value"
      interval_seconds="$2"
      shift 2
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    -*) fail_usage "unknown argument '$1'" ;;
    *)
      positional+=("$1")
      shift
      ;;
  esac
done
[[ ${#positional[@]} -eq 2 ]] || fail_usage "expected KUBECONFIG and EXPECTED"
kubeconfig="${positional[0]}"
expected="${positional[1]}"
[[ "$expected" =~ ^[1-9][0-9]*$ ]] || fail_usage "EXPECTED must be a positive count, not '$expected'"
[[ "$timeout_seconds" =~ ^[1-9][0-9]*$ ]] || fail_usage "--timeout must be a positive number of seconds"
[[ "$interval_seconds" =~ ^[0-9]+([.][0-9]+)?$ ]] || fail_usage "--interval must be a number of seconds"
[[ -f "$kubeconfig" && -r "$kubeconfig" ]] || fail_usage "cannot read the kubeconfig file $kubeconfig"

deadline=$((SECONDS + timeout_seconds))

# kubectl bounded by the time left (at most 30 s per call); its output on stdout, errors kept.
kube() {
  local left=$((deadline - SECONDS))
  ((left > 30)) && left=30
  ((left < 1)) && left=1
  timeout --kill-after=2 "$left" kubectl --kubeconfig "$kubeconfig" --request-timeout="${left}s" "$@"
}

failures=()
ready_node=""

check_readyz() {
  local out
  if out="$(kube get --raw /readyz 2>&1)" && [[ "$out" == ok* ]]; then return 0; fi
  failures+=("/readyz is not ok: ${out:-no answer within the time left}")
  return 1
}

check_nodes() {
  local out name status total=0 ready=0 not_ready=()
  ready_node=""
  if ! out="$(kube get nodes -l node-role.kubernetes.io/control-plane --no-headers \
    -o 'custom-columns=NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status' 2>&1)"; then
    failures+=("cannot list control-plane nodes: ${out:-no answer within the time left}")
    return 1
  fi
  while read -r name status _; do
    [[ -n "$name" ]] || continue
    total=$((total + 1))
    if [[ "$status" == True ]]; then
      ready=$((ready + 1))
      [[ -n "$ready_node" ]] || ready_node="$name"
    else
      not_ready+=("$name ($status)")
    fi
  done <<<"$out"
  if ((${#not_ready[@]} > 0)); then failures+=("control-plane nodes not Ready: ${not_ready[*]}"); fi
  if ((total != expected)); then failures+=("$total control-plane nodes, expected $expected"); fi
  ((${#not_ready[@]} == 0 && total == expected)) && return 0
  echo "control-plane nodes: $ready/$expected Ready" >&2
  return 1
}

check_etcd() {
  local out healthy
  if [[ -z "$ready_node" ]]; then
    failures+=("no Ready control-plane node to run etcdctl on")
    return 1
  fi
  if ! out="$(kube -n kube-system exec "etcd-$ready_node" -- etcdctl --endpoints https://127.0.0.1:2379 \
    --cacert "$ETCD_PKI/ca.crt" --cert "$ETCD_PKI/healthcheck-client.crt" --key "$ETCD_PKI/healthcheck-client.key" \
    endpoint health --cluster 2>&1)"; then
    failures+=("etcd endpoint health --cluster failed (via etcd-$ready_node): ${out:-no answer within the time left}")
    return 1
  fi
  healthy="$(grep -c ' is healthy' <<<"$out" || true)"
  if ((healthy != expected)); then
    failures+=("etcd reports $healthy healthy members, expected $expected")
    return 1
  fi
}

attempt=0
while true; do
  attempt=$((attempt + 1))
  failures=()
  # All three in one attempt; the node check also picks the etcd pod.
  if check_readyz && check_nodes && check_etcd; then
    echo "control plane healthy: /readyz ok, $expected/$expected control-plane nodes Ready," \
      "etcd $expected/$expected members healthy (attempt $attempt)"
    exit 0
  fi
  for failure in "${failures[@]}"; do echo "attempt $attempt: $failure" >&2; done
  if ((SECONDS + ${interval_seconds%.*} >= deadline)); then
    echo "check-control-plane: the control plane is not healthy after ${timeout_seconds}s ($attempt attempts):" >&2
    for failure in "${failures[@]}"; do echo "  - $failure" >&2; done
    exit 1
  fi
  sleep "$interval_seconds"
done
