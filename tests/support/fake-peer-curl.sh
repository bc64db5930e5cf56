# shellcheck shell=bash
# A stand-in for curl between control-plane nodes in the node-script sandboxes (nodeSandbox.ts
# prepends its prelude: the call log and `count`). tests/support/peerNetwork.ts explains the
# network directory $FAKE_NET it answers from: per address and port, what answers there.
#
# curl as the scripts call it: --silent --insecure --max-time N [--output FILE] --write-out FMT
# URL. curl(1), --write-out: http_code is the status of the last response, 000 without one;
# time_connect the seconds until the TCP connection was made, 0.000000 without one; "\n" in FMT
# is a newline. Exit status (curl(1), EXIT CODES): 7 failed to connect to the host, 56 failure
# in receiving network data: etcd's client port ends the TLS connection of a client without a
# certificate (kubeadm runs etcd with --client-cert-auth=true), after the TCP connection was made.
output="" format="" url=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --silent | --insecure) shift ;;
    --max-time) shift 2 ;;
    --output) output="$2"; shift 2 ;;
    --write-out) format="$2"; shift 2 ;;
    https://*) url="$1"; shift ;;
    *) echo "fake curl: unexpected $1" >&2; exit 99 ;;
  esac
done
hostport="${url#https://}"
hostport="${hostport%%/*}"
host="${hostport%%:*}"
answer=""
if [[ ! -e "$FAKE_NET/down/$host" && -f "$FAKE_NET/$hostport" ]]; then
  read -r -a answers <"$FAKE_NET/$hostport"
  n="$(count "curl-$hostport")"
  if ((n > ${#answers[@]})); then n=${#answers[@]}; fi
  answer="${answers[n - 1]}"
fi
write_out() {
  local f="${format//\\n/$'\n'}"
  f="${f//%\{http_code\}/$1}"
  printf '%s' "${f//%\{time_connect\}/$2}"
}
case "$answer" in
  "" | 000)
    write_out 000 0.000000
    echo "curl: (7) Failed to connect to $host port ${hostport#*:}: Connection refused" >&2
    exit 7
    ;;
  open)
    write_out 000 0.000412
    echo "curl: (56) OpenSSL SSL_read: tlsv13 alert certificate required" >&2
    exit 56
    ;;
esac
# /readyz (k8s.io/apiserver pkg/server/healthz): "ok" when every check passes; else status 500,
# the failed checks and "readyz check failed".
if [[ "$answer" == 200 ]]; then body="ok"; else body=$'[-]etcd failed: reason withheld\nreadyz check failed'; fi
if [[ -n "$output" ]]; then printf '%s' "$body" >"$output"; else printf '%s' "$body"; fi
write_out "$answer" 0.000412
