#!/usr/bin/env bash
# Reports when this control-plane node's kubeadm certificates expire, as one line of JSON on
# stdout, from `kubeadm certs check-expiration -o json` (read with jq). Pulumi runs it after an
# upgrade or a renewal and exports the earliest expiry. The output holds names and dates only, no
# key or credential.
set -euo pipefail
umask 077
# Bash's regular expressions follow the locale; C makes [a-z] mean exactly a to z.
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
  --timeout SECONDS  Longest time `kubeadm certs check-expiration -o json` may take (default 60).
  --root DIR         Prefix for every file this script reads or writes (default: $ROOT, else
                     empty, meaning /). For tests; commands still act on this host.
  -h, --help         Show this help and exit.

Environment:
  ROOT  Same as --root; the flag wins.

Input: kubeadm's structured output, kind CertificateExpirationInfo of the output API
output.kubeadm.k8s.io/v1alpha3 (kubeadm 1.30 and later): "certificates" (the leaf certificates
and the certificates embedded in the kubeconfig files) and "certificateAuthorities" (the CAs),
each entry with "name", "expirationDate" (RFC 3339, UTC), "residualTime" (seconds),
"externallyManaged", "missing" (and "caName" for a leaf). Any other kind or version, or an
entry without those fields, is refused rather than guessed at.

Output (one line; dates in UTC, ISO 8601, as kubeadm reports them):
  {"node":"NAME","earliest":"2027-11-21T13:21:14Z","earliestName":"admin.conf",
   "certificates":[{"name":"admin.conf","expires":"2027-11-21T13:21:14Z","externallyManaged":false},...],
   "authorities":[{"name":"ca","expires":"2035-11-19T13:21:14Z","externallyManaged":false},...],
   "missing":["super-admin.conf"]}
"certificates" and "authorities" keep kubeadm's order and leave out the entries kubeadm marks
missing. "earliest" and "earliestName" are the first expiry in "certificates" only (on a tie,
the first in kubeadm's order): the CAs last ten years and `kubeadm certs renew` does not renew
them. An expired certificate is listed with its past date. "missing" names the certificates and
CAs kubeadm reports missing (a control-plane node that joined has no super-admin.conf); it is
empty when nothing is missing.

kubeadm's stderr, and its stdout, go to /var/log/hcloud-control-plane/cert-expiry.log (0600).

Exit status: 0 printed, 1 kubeadm failed or printed something this script cannot read (nothing
is printed then), 2 usage error.
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

# The JSON of `kubeadm certs check-expiration -o json`: newCmdCertsExpiration and
# fetchCertificateExpirationInfo in kubernetes/kubernetes cmd/kubeadm/app/cmd/certs.go fill a
# CertificateExpirationInfo (cmd/kubeadm/app/apis/output/v1alpha3/types.go: "certificates" and
# "certificateAuthorities", each a list of Certificate {name, expirationDate, residualTime,
# externallyManaged, caName (omitempty), missing}; a missing one has only its name, missing: true,
# expirationDate null). k8s.io/cli-runtime's JSONPrinter writes it, kind and apiVersion first; in
# JSON mode kubeadm's "[check-expiration] ..." lines are not printed (ResourcePrinterWrapper's
# Printf does nothing, cmd/kubeadm/app/util/output/output.go), so stdout is the document alone.
#
# REPORT turns it into this script's report, or into {"error": "<what is wrong>"}. The dates must be RFC 3339 in UTC to the second, as metav1.Time writes them; they
# then sort as text, and a date that is not a real one (Feb 30) does not survive the round trip.
# shellcheck disable=SC2016 # jq, not shell
readonly REPORT='
def problem($message): {error: $message};
def name_ok: type == "string" and test("^[a-z0-9][a-z0-9.-]*$");
def date_ok: type == "string" and test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
  and (fromdateiso8601 | todateiso8601) == .;
def entry_ok: type == "object" and (.name | name_ok) and (.missing | type) == "boolean"
  and (.missing or ((.expirationDate | date_ok) and (.residualTime | type) == "number"
  and (.externallyManaged | type) == "boolean"));
def present: map(select(.missing | not) | {name, expires: .expirationDate, externallyManaged});
if type != "object" then problem("printed no JSON object")
elif .apiVersion != "output.kubeadm.k8s.io/v1alpha3" or .kind != "CertificateExpirationInfo" then
  problem("printed kind \(.kind | tojson) of \(.apiVersion | tojson), not CertificateExpirationInfo of output.kubeadm.k8s.io/v1alpha3")
elif (.certificates | type) != "array" then problem("listed no certificate")
elif (.certificateAuthorities | type) != "array" then problem("listed no certificate authority")
elif ([.certificates[], .certificateAuthorities[] | select(entry_ok | not)] | length) > 0 then
  problem("printed an entry this script cannot read: \([.certificates[], .certificateAuthorities[] | select(entry_ok | not)][0] | tojson)")
else
  (.certificates | present) as $certificates
  | if ($certificates | length) == 0 then problem("listed no certificate")
    elif (.certificateAuthorities | present | length) == 0 then problem("listed no certificate authority")
    else
      (reduce $certificates[1:][] as $c ($certificates[0]; if $c.expires < .expires then $c else . end)) as $first
      | {node: $node, earliest: $first.expires, earliestName: $first.name, certificates: $certificates,
         authorities: (.certificateAuthorities | present),
         missing: [.certificates[], .certificateAuthorities[] | select(.missing) | .name]}
    end
end'

main() {
  parse_args "$@"
  require_root
  open_log --node-name "$node_name"

  local output report
  output="$(bounded kubeadm certs check-expiration -o json 2>>"$log_file")" ||
    die "kubeadm certs check-expiration failed on ${node_name}; see ${log_file}"
  printf '%s\n' "$output" >>"$log_file"

  # One JSON document, nothing after it: jq reads each document of its input in turn.
  report="$(jq -c -s --arg node "$node_name" "if length == 1 then .[0] | ${REPORT} else {error: \"printed no single JSON document\"} end" \
    <<<"$output" 2>>"$log_file")" ||
    die "kubeadm certs check-expiration -o json on ${node_name} printed no JSON; see ${log_file}"
  if [[ "$(jq -r '.error // empty' <<<"$report")" != "" ]]; then
    die "kubeadm certs check-expiration -o json on ${node_name} $(jq -r '.error' <<<"$report"); see ${log_file}"
  fi
  printf '%s\n' "$report"
}

main "$@"
