#!/usr/bin/env bash
# A stand-in for kubectl talking to a kubeadm control plane whose nodes are Hetzner servers, for
# tests/resize.test.ts. State in $FAKE_KUBE (the test writes it as the fake Hetzner API moves
# servers): down/NODE exists while NODE's server is not running; cordoned/NODE while NODE is
# unschedulable; etcd/NODE holds the client URL of NODE's real etcd member (a loopback etcd
# cluster, tests/support/etcdCluster.ts); readyz-fail makes /readyz fail. Every call is appended
# to $FAKE_KUBE/calls. What it models, from kubectl's source (kubernetes/kubernetes,
# staging/src/k8s.io/kubectl/pkg/cmd/...):
# - `get --raw /readyz` prints the body, "ok" (the API server's healthz handler); an error
#   answer prints `Error from server (InternalError): ...` and exits 1 (cmd/util/helpers.go).
# - `get node|pod NAME -o jsonpath=...`: the Ready condition; a node whose kubelet stopped
#   posting is `Unknown` (the node lifecycle controller) and its pods `False` (MarkPodsNotReady);
#   `{.spec.unschedulable}` prints `true`, or nothing when the field is unset (not cordoned).
# - `drain NODE` cordons first ("node/NODE cordoned"), evicts, then "node/NODE drained"
#   (cmd/drain/drain.go); `uncordon NODE` prints "node/NODE uncordoned".
# - `exec POD -- CMD`: runs CMD in the pod; a node that is down cannot be reached ("error
#   dialing backend", exit 1); CMD's stdout and stderr pass through and a non-zero exit ends in
#   "command terminated with exit code N" with that code (cmd/exec/exec.go, CodeExitError).
set -euo pipefail
state="${FAKE_KUBE:?}"
printf '%s\n' "$*" >>"$state/calls"
namespace=default
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kubeconfig) shift 2 ;;
    --request-timeout=*) shift ;;
    -n)
      namespace="$2"
      shift 2
      ;;
    --) break ;;
    *)
      args+=("$1")
      shift
      ;;
  esac
done
down() { [[ -e "$state/down/$1" ]]; }
verb="${args[0]:-}"
case "$verb" in
  get)
    if [[ "${args[1]}" == --raw && "${args[2]}" == /readyz ]]; then
      if [[ -e "$state/readyz-fail" ]]; then
        printf '%s\n' 'Error from server (InternalError): an error on the server ("[-]etcd failed: reason withheld readyz check failed") has prevented the request from succeeding' >&2
        exit 1
      fi
      printf 'ok'
      exit 0
    fi
    kind="${args[1]}" name="${args[2]}" output="${args[4]:-}"
    case "$kind:$output" in
      'node:jsonpath={.status.conditions[?(@.type=="Ready")].status}')
        if down "$name"; then printf 'Unknown'; else printf 'True'; fi
        ;;
      'node:jsonpath={.spec.unschedulable}')
        if [[ -e "$state/cordoned/$name" ]]; then printf 'true'; fi
        ;;
      'pod:jsonpath={.status.conditions[?(@.type=="Ready")].status}')
        [[ "$namespace" == kube-system && "$name" == kube-apiserver-* ]] || {
          echo "Error from server (NotFound): pods \"$name\" not found" >&2
          exit 1
        }
        if down "${name#kube-apiserver-}"; then printf 'False'; else printf 'True'; fi
        ;;
      *)
        echo "fake kubectl: unmodelled get: ${args[*]}" >&2
        exit 99
        ;;
    esac
    ;;
  drain)
    node="${args[1]}"
    touch "$state/cordoned/$node"
    echo "node/$node cordoned"
    echo "Warning: ignoring DaemonSet-managed Pods: kube-system/cilium-x1, kube-system/kube-proxy-x1"
    echo "node/$node drained"
    ;;
  uncordon)
    node="${args[1]}"
    rm -f "$state/cordoned/$node"
    echo "node/$node uncordoned"
    ;;
  exec)
    pod="${args[1]}"
    node="${pod#etcd-}"
    [[ "$namespace" == kube-system && "$pod" == etcd-* && -f "$state/etcd/$node" ]] || {
      echo "Error from server (NotFound): pods \"$pod\" not found" >&2
      exit 1
    }
    if down "$node"; then
      echo "Error from server: error dialing backend: dial tcp 10.20.1.1:10250: connect: no route to host" >&2
      exit 1
    fi
    shift # the --
    [[ "${1:-}" == etcdctl ]] || {
      echo "fake kubectl: unmodelled exec: $*" >&2
      exit 99
    }
    shift
    # The pod's etcdctl against its own member: the test cluster is plain HTTP on loopback, so
    # the member's URL replaces https://127.0.0.1:2379 and the certificate flags go.
    cmd=()
    while [[ $# -gt 0 ]]; do
      case "$1" in
        --endpoints) cmd+=(--endpoints "$(cat "$state/etcd/$node")") && shift 2 ;;
        --cacert | --cert | --key) shift 2 ;;
        *) cmd+=("$1") && shift ;;
      esac
    done
    rc=0
    ETCDCTL_API=3 /usr/bin/etcdctl "${cmd[@]}" || rc=$?
    if ((rc != 0)); then
      echo "command terminated with exit code $rc" >&2
      exit "$rc"
    fi
    ;;
  *)
    echo "fake kubectl: unmodelled command: ${args[*]}" >&2
    exit 99
    ;;
esac
