#!/usr/bin/env bash
# A stand-in for kubectl against a cluster held in files, for scripts/jobs/kubelet-csr-approver.sh
# (tests/csrApprover.test.ts). State: $FAKE_KUBE/nodes.json and $FAKE_KUBE/csrs.json (arrays of
# objects); every call is appended to $FAKE_KUBE/calls. Failure injection: FAKE_KUBECTL_FAIL holds
# `get-nodes`, `get-csr` or `approve` (space-separated) to make those calls fail as an
# unreachable API server does.
#
# What it models, from kubectl itself:
# - `kubectl get <resource> -o json` with several objects prints one object of kind "List",
#   apiVersion "v1", with the objects in `items` (kubectl reference, "kubectl get": -o json;
#   kubectl's printers wrap multiple results in a v1 List, metadata.resourceVersion "").
# - `kubectl certificate approve NAME` (kubernetes/kubectl pkg/cmd/certificates/certificates.go,
#   RunCertificateApprove / modifyCertificateCondition / addConditionIfNeeded): reads the latest
#   CSR by name; NotFound is an error; a CSR that has a Denied condition is refused with
#   `certificate signing request "NAME" is already Denied`; one already Approved is left as it is
#   (no update without --force); otherwise an `Approved` condition (status "True", reason
#   KubectlApprove, message "This CSR was approved by kubectl certificate approve.") is appended
#   through the approval subresource. It prints `certificatesigningrequest.certificates.k8s.io/NAME
#   approved` on success; errors go to stderr prefixed `error: ` and exit 1 (cmdutil.CheckErr).
set -euo pipefail
state="${FAKE_KUBE:?}"
printf '%s\n' "$*" >>"$state/calls"

fails() { [[ " ${FAKE_KUBECTL_FAIL:-} " == *" $1 "* ]]; }
refused() {
  echo "The connection to the server 10.96.0.1:443 was refused - did you specify the right host or port?" >&2
  exit 1
}
list() { jq '{apiVersion: "v1", items: ., kind: "List", metadata: {resourceVersion: ""}}' "$1"; }

case "$*" in
  "get nodes -o json")
    if fails get-nodes; then refused; fi
    list "$state/nodes.json"
    ;;
  "get csr -o json")
    if fails get-csr; then refused; fi
    list "$state/csrs.json"
    ;;
  "certificate approve "*)
    [[ $# -eq 3 ]] || { echo "fake kubectl: one name per approve expected: $*" >&2; exit 99; }
    if fails approve; then refused; fi
    name="$3"
    if ! jq -e --arg n "$name" 'any(.[]; .metadata.name == $n)' "$state/csrs.json" >/dev/null; then
      printf 'Error from server (NotFound): certificatesigningrequests.certificates.k8s.io "%s" not found\n' "$name" >&2
      exit 1
    fi
    conditions="$(jq -r --arg n "$name" '.[] | select(.metadata.name == $n) | (.status.conditions // [])[].type' "$state/csrs.json")"
    if grep -qx Denied <<<"$conditions"; then
      printf 'error: certificate signing request "%s" is already Denied\n' "$name" >&2
      exit 1
    fi
    if ! grep -qx Approved <<<"$conditions"; then
      jq --arg n "$name" --arg now "$(date -u +%Y-%m-%dT%H:%M:%SZ)" '
        map(if .metadata.name == $n then
          .status.conditions = ((.status.conditions // []) + [{type: "Approved", status: "True",
            reason: "KubectlApprove", message: "This CSR was approved by kubectl certificate approve.",
            lastUpdateTime: $now}])
        else . end)' "$state/csrs.json" >"$state/csrs.json.new"
      mv "$state/csrs.json.new" "$state/csrs.json"
    fi
    printf 'certificatesigningrequest.certificates.k8s.io/%s approved\n' "$name"
    ;;
  *)
    echo "fake kubectl: unexpected call: $*" >&2
    exit 99
    ;;
esac
