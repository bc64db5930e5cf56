#!/usr/bin/env bash
# Reports when this control-plane node's kubeadm certificates expire, as one line of JSON on
# stdout, from `kubeadm certs check-expiration`. Pulumi runs it after an upgrade or a renewal and
# exports the earliest expiry. The output holds names and dates only, no key or credential.
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z, and GNU date
# read English month names.
export LC_ALL=C

readonly SCRIPT_NAME="cert-expiry"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: cert-expiry.sh --node-name NAME [--timeout SECONDS] [--root DIR]

Prints when the kubeadm certificates of this control-plane node expire: exactly one line of
JSON on stdout, nothing else. Run as root on the node.

Options:
  --node-name NAME   Kubernetes node name of this node, copied into the output. Required.
  --timeout SECONDS  Longest time `kubeadm certs check-expiration` may take (default 60).
  --root DIR         Prefix for every file this script reads or writes (default: $ROOT, else
                     empty, meaning /). For tests; commands still act on this host.
  -h, --help         Show this help and exit.

Environment:
  ROOT  Same as --root; the flag wins.

Output (one line; dates in UTC, ISO 8601, to the minute as kubeadm prints them):
  {"node":"NAME","earliest":"2027-11-21T13:21:00Z","earliestName":"admin.conf",
   "certificates":[{"name":"admin.conf","expires":"2027-11-21T13:21:00Z","externallyManaged":false},...],
   "authorities":[{"name":"ca","expires":"2035-11-19T13:21:00Z","externallyManaged":false},...],
   "missing":["super-admin.conf"]}
"certificates" is kubeadm's first table (the leaf certificates and the certificates embedded in
the kubeconfig files), "authorities" its second (the CAs). "earliest" and "earliestName" are the
first expiry in "certificates" only: the CAs last ten years and `kubeadm certs renew` does not
renew them. An expired certificate is listed with its past date (kubeadm shows "<invalid>" as
its residual time). "missing" names the rows kubeadm marks !MISSING! (a control-plane node that
joined has no super-admin.conf); it is empty when nothing is missing.

kubeadm's stderr, and its stdout, go to /var/log/hcloud-control-plane/cert-expiry.log (0600).

Exit status: 0 printed, 1 kubeadm failed or printed a row this script cannot read (nothing is
printed then), 2 usage error.
EOF
}

node_name=""
timeout_seconds="60"
ROOT="${ROOT:-}"

parse_args() {
  parse_flags --node-name=node_name --timeout=timeout_seconds --root=ROOT -- "$@"

  is_dns_name "$node_name" || usage_error "--node-name must be a node name (lowercase DNS name), got '${node_name}'"
  check_timeout
  check_root_dir
}

# The text output of `kubeadm certs check-expiration`, as printed by certTextPrinter.PrintObj in
# kubernetes/kubernetes cmd/kubeadm/app/cmd/certs.go: a tabwriter (minwidth 10, padding 3) with
#   CERTIFICATE  EXPIRES  RESIDUAL TIME  CERTIFICATE AUTHORITY  EXTERNALLY MANAGED
#   <name>  <Jan 02, 2006 15:04 MST>  <short duration or <invalid>>  <ca name>  <yes|no, padded>
#   !MISSING! <name>
# then an empty line and
#   CERTIFICATE AUTHORITY  EXPIRES  RESIDUAL TIME  EXTERNALLY MANAGED
#   <name>  <date>  <residual>  <yes|no>
#   !MISSING! <name>
# Before the first table, "[check-expiration] ..." lines and an empty line (reading the
# kubeadm-config ConfigMap, or falling back to the default configuration).
readonly CERT_HEADER='^CERTIFICATE +EXPIRES +RESIDUAL TIME +CERTIFICATE AUTHORITY +EXTERNALLY MANAGED *$'
readonly CA_HEADER='^CERTIFICATE AUTHORITY +EXPIRES +RESIDUAL TIME +EXTERNALLY MANAGED *$'
readonly NAME='[a-z0-9][a-z0-9.-]*'
# kubeadm formats x509's NotAfter, which Go parses as UTC.
readonly DATE='([A-Z][a-z]{2}) ([0-9]{2}), ([0-9]{4}) ([0-9]{2}):([0-9]{2}) UTC'
readonly RESIDUAL='(<invalid>|[0-9]+[smhdy])'
readonly CERT_ROW="^(${NAME}) +${DATE} +${RESIDUAL} +(${NAME}) +(yes|no) *$"
readonly CA_ROW="^(${NAME}) +${DATE} +${RESIDUAL} +(yes|no) *$"
readonly MISSING_ROW="^!MISSING! (${NAME}) *$"

# iso_date MON DD YYYY HH MM: prints the date as YYYY-MM-DDTHH:MM:00Z; fails on an invalid date.
iso_date() {
  date -u -d "$2 $1 $3 $4:$5 UTC" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null
}

main() {
  parse_args "$@"
  require_root
  open_log --node-name "$node_name"

  local output
  output="$(bounded kubeadm certs check-expiration 2>>"$log_file")" ||
    die "kubeadm certs check-expiration failed on ${node_name}; see ${log_file}"
  printf '%s\n' "$output" >>"$log_file"

  # section: before (preamble), certs (first table), between (after its end), cas (second table)
  local section=before line expires json earliest="" earliest_name=""
  local -a certs=() cas=() missing=()
  while IFS= read -r line; do
    case "$section" in
      before)
        if [[ "$line" =~ $CERT_HEADER ]]; then section=certs; fi
        ;;
      certs)
        if [[ -z "$line" ]]; then
          section=between
        elif [[ "$line" =~ $CERT_ROW ]]; then
          expires="$(iso_date "${BASH_REMATCH[@]:2:5}")" ||
            die "kubeadm on ${node_name} printed an invalid date in: ${line}"
          json="{\"name\":\"${BASH_REMATCH[1]}\",\"expires\":\"${expires}\",\"externallyManaged\":"
          if [[ "${BASH_REMATCH[9]}" == yes ]]; then json+="true}"; else json+="false}"; fi
          certs+=("$json")
          # The same fixed-width format sorts as text.
          if [[ -z "$earliest" || "$expires" < "$earliest" ]]; then
            earliest="$expires"
            earliest_name="${BASH_REMATCH[1]}"
          fi
        elif [[ "$line" =~ $MISSING_ROW ]]; then
          missing+=("\"${BASH_REMATCH[1]}\"")
        else
          die "kubeadm on ${node_name} printed a certificate row this script cannot read: ${line}"
        fi
        ;;
      between)
        [[ "$line" =~ $CA_HEADER ]] ||
          die "kubeadm on ${node_name} printed '${line}' where the certificate authority table should start"
        section=cas
        ;;
      cas)
        if [[ -z "$line" ]]; then
          continue
        elif [[ "$line" =~ $CA_ROW ]]; then
          expires="$(iso_date "${BASH_REMATCH[@]:2:5}")" ||
            die "kubeadm on ${node_name} printed an invalid date in: ${line}"
          json="{\"name\":\"${BASH_REMATCH[1]}\",\"expires\":\"${expires}\",\"externallyManaged\":"
          if [[ "${BASH_REMATCH[8]}" == yes ]]; then json+="true}"; else json+="false}"; fi
          cas+=("$json")
        elif [[ "$line" =~ $MISSING_ROW ]]; then
          missing+=("\"${BASH_REMATCH[1]}\"")
        else
          die "kubeadm on ${node_name} printed a certificate authority row this script cannot read: ${line}"
        fi
        ;;
    esac
  done <<<"$output"

  [[ "$section" != before ]] ||
    die "kubeadm certs check-expiration on ${node_name} printed no certificate table; see ${log_file}"
  [[ ${#certs[@]} -gt 0 ]] ||
    die "kubeadm certs check-expiration on ${node_name} listed no certificate; see ${log_file}"
  [[ "$section" == cas ]] ||
    die "kubeadm certs check-expiration on ${node_name} printed no certificate authority table; see ${log_file}"

  local IFS=,
  printf '{"node":"%s","earliest":"%s","earliestName":"%s","certificates":[%s],"authorities":[%s],"missing":[%s]}\n' \
    "$node_name" "$earliest" "$earliest_name" "${certs[*]}" "${cas[*]:-}" "${missing[*]:-}"
}

main "$@"
