# shellcheck shell=bash
# A stand-in for OpenSSH's ssh between control-plane nodes in the node-script sandboxes
# (nodeSandbox.ts prepends its prelude: the call log records the argv, so the key's path and
# never its content). tests/support/peerNetwork.ts explains $FAKE_NET: each host is a sandbox
# of its own, with its environment and the key root accepts there.
#
# ssh(1): ssh [-i identity_file] [-o option]... destination [command [argument ...]]: the command
# and its arguments are joined with spaces and run by the remote user's shell (bash for root),
# stdin, stdout and stderr passed through; "ssh exits with the exit status of the remote command
# or with 255 if an error occurred". A private key file that others may read is ignored
# ("WARNING: UNPROTECTED PRIVATE KEY FILE!"); with BatchMode=yes nothing asks for a password,
# so a key the host does not accept ends in "Permission denied (publickey)." and 255;
# StrictHostKeyChecking=accept-new adds an unknown host's key to UserKnownHostsFile and goes on.
identity="" known_hosts="" destination=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -i) identity="$2"; shift 2 ;;
    -o)
      case "$2" in UserKnownHostsFile=*) known_hosts="${2#UserKnownHostsFile=}" ;; esac
      shift 2
      ;;
    -*) echo "fake ssh: unexpected option $1" >&2; exit 99 ;;
    *) destination="$1"; shift; break ;;
  esac
done
host="${destination#*@}"
command="$*"
if [[ -e "$FAKE_NET/down/$host" ]]; then echo "ssh: connect to host $host port 22: No route to host" >&2; exit 255; fi
if [[ ! -f "$FAKE_NET/hosts/$host/env" ]]; then echo "ssh: connect to host $host port 22: Connection refused" >&2; exit 255; fi
if [[ -n "$known_hosts" ]] && ! grep -q "^$host " "$known_hosts" 2>/dev/null; then
  echo "$host ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeHostKeyOf$host" >>"$known_hosts"
  echo "Warning: Permanently added '$host' (ED25519) to the list of known hosts." >&2
fi
if [[ -z "$identity" || ! -r "$identity" ]]; then echo "root@$host: Permission denied (publickey)." >&2; exit 255; fi
case "$(stat -c %a "$identity")" in
  600 | 400) ;;
  *)
    echo "WARNING: UNPROTECTED PRIVATE KEY FILE!" >&2
    echo "root@$host: Permission denied (publickey)." >&2
    exit 255
    ;;
esac
if ! cmp -s "$identity" "$FAKE_NET/hosts/$host/authorized_key"; then
  echo "root@$host: Permission denied (publickey)." >&2
  exit 255
fi
echo "$host $command" >>"$FAKE_NET/ssh-commands"
# The host's file system is its sandbox root ($ROOT there): the node scripts live under it.
scripts=/usr/local/lib/hcloud-control-plane/node/
command="${command//"$scripts"/\$ROOT$scripts}"
# shellcheck disable=SC2016 # expanded by the remote bash
exec /usr/bin/env -i /bin/bash -c 'set -a; source "$1"; set +a; exec /bin/bash -c "$2"' ssh-remote \
  "$FAKE_NET/hosts/$host/env" "$command"
