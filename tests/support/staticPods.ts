/**
 * Static pods on a control-plane node, for the tests of the scripts that restart them
 * (renew-certificates.sh, upgrade-node.sh; lib.sh's restart_static_pod and
 * restart_kube_vip_if_stale), run in a tests/support/nodeSandbox.ts sandbox:
 *
 * - `crictlFake`: the body of a fake `crictl --runtime-endpoint ENDPOINT ps --name ^NAME$ -q`.
 *   The real command prints the ids of the running containers whose name matches (one per line,
 *   nothing when none: `crictl ps --help`, -q "Only display container IDs"). The kubelet stops a
 *   static pod's container when its manifest leaves /etc/kubernetes/manifests and starts one
 *   when it is back; this fake lists one exactly while the manifest is in $FAKE_MANIFESTS, as the
 *   kubelet would after a moment. FAKE_NEVER_GONE / FAKE_NEVER_BACK name containers (comma-
 *   separated) that never stop / never start again; FAKE_FAIL or FAKE_HANG naming crictl make
 *   it fail or hang. Each call appends "<name> present|absent" (the manifest it saw) to
 *   $FAKE_CAPTURE/crictl.
 * - `renewAdminConf`: a bash function for fake kubeadms, `renew_admin_conf`, that rewrites
 *   $FAKE_ADMIN_CONF with a new embedded client certificate, as `kubeadm certs renew all` and
 *   `kubeadm upgrade apply/node` do (cmd/kubeadm/app/phases/certs/renewal/manager.go
 *   RenewUsingLocalCA writes the kubeconfig again with a new client-certificate-data;
 *   cmd/kubeadm/app/phases/upgrade/staticpods.go StaticPodControlPlane calls it for admin.conf
 *   after the static pods it manages).
 *
 * What this cannot prove: that a real kubelet and containerd stop and start a static pod when its
 * manifest moves. The proof of that is a renewal or an upgrade on real servers.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { kubeVipLeaseName } from "../../components/node/kubeVip";
import type { Sandbox } from "./nodeSandbox";

export const crictlFake = `
[[ $# -eq 6 && "$1 $3 $4 $6" == "--runtime-endpoint ps --name -q" ]] || { echo "fake crictl: unexpected $*" >&2; exit 99; }
if hangs crictl; then exec sleep 30; fi
if fails crictl; then echo "connect: connection refused" >&2; exit 1; fi
name="\${5#^}"; name="\${name%$}"
state=absent
if [[ -f "$FAKE_MANIFESTS/$name.yaml" ]]; then state=present; fi
echo "$name $state" >>"$FAKE_CAPTURE/crictl"
listed() { [[ ",$1," == *",$name,"* ]]; }
if listed "\${FAKE_NEVER_GONE:-}" || { [[ $state == present ]] && ! listed "\${FAKE_NEVER_BACK:-}"; }; then
  echo "3f1c0a9e7b2d\${#name}"
fi`;

/** The crictl call lib.sh's crictl_ps makes for the static pod `name`. */
export const crictlCall = (name: string): string =>
  `crictl --runtime-endpoint unix:///run/containerd/containerd.sock ps --name ^${name}$ -q`;

/** The manifest state the fake crictl saw at each call: "<name> present|absent". */
export function crictlSeen(sandbox: Sandbox): string[] {
  const file = path.join(sandbox.capture, "crictl");
  return fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim().split("\n") : [];
}

/** An admin kubeconfig as kubeadm writes it, with the embedded client certificate `serial`. */
export function adminKubeconfig(serial: string): string {
  return [
    "apiVersion: v1",
    "kind: Config",
    "users:",
    "- name: kubernetes-admin",
    "  user:",
    `    client-certificate-data: Y2VydGlmaWNhdGUg${serial}`,
    `    client-key-data: a2V5IG9mIGNlcnRpZmljYXRlIA${serial}`,
    "",
  ].join("\n");
}

/** `renew_admin_conf` for a fake kubeadm: admin.conf with a new client certificate each time. */
export const renewAdminConf = `
renew_admin_conf() {
  local n
  n="renewed$(count admin-conf)"
  printf '%s\\n' "apiVersion: v1" "kind: Config" "users:" "- name: kubernetes-admin" "  user:" \\
    "    client-certificate-data: Y2VydGlmaWNhdGUg$n" "    client-key-data: a2V5IG9mIGNlcnRpZmljYXRlIA$n" \\
    >"$FAKE_ADMIN_CONF"
}`;

/**
 * kube-vip's static pod manifest, trimmed to what the scripts read: the Lease it elects with
 * (`vip_leasename`, laid out as components/node/kubeVip.ts renders it).
 */
export const kubeVipManifest = [
  "apiVersion: v1",
  "kind: Pod",
  "metadata:",
  "  name: kube-vip",
  "  namespace: kube-system",
  "spec:",
  "  containers:",
  "    - env:",
  "        - name: vip_leaseduration",
  '          value: "15"',
  "        - name: vip_leasename",
  `          value: ${kubeVipLeaseName}`,
  "      name: kube-vip",
  "",
].join("\n");

/** The Lease kube-vip elects with. */
export const kubeVipLease = kubeVipLeaseName;

/**
 * The arm of a fake kubectl's `case "$*" in` for the kube-vip Lease read
 * (`-n kube-system get lease NAME -o jsonpath={.spec.holderIdentity} {.spec.renewTime}`): the
 * holder and spec.renewTime, a MicroTime in RFC 3339 with microseconds as the API serializes it.
 * The leader renews every vip_retryperiod seconds (client-go tools/leaderelection
 * tryAcquireOrRenew), so a Lease held by a live kube-vip has a renewTime of about now.
 * FAKE_LEASE_RENEWED_FROM=N: reads before the N-th see the renewTime of an hour ago (a leader
 * that stopped, its Lease not yet taken over); FAKE_LEASE=missing: no such Lease (kubectl's
 * NotFound); FAKE_LEASE=unheld: no holder (jsonpath prints a missing field as nothing).
 */
export const kubeVipLeaseArm = (
  lease = kubeVipLease,
): string => `  *" -n kube-system get lease ${lease} -o jsonpath={.spec.holderIdentity} {.spec.renewTime}")
    n="$(count lease)"
    case "\${FAKE_LEASE:-held}" in
      missing) echo 'Error from server (NotFound): leases.coordination.k8s.io "${lease}" not found' >&2; exit 1 ;;
      unheld) printf ' ' ; exit 0 ;;
    esac
    if (( n < \${FAKE_LEASE_RENEWED_FROM:-1} )); then at="$(date -u -d '1 hour ago' +%Y-%m-%dT%H:%M:%S.000000Z)"
    else at="$(date -u +%Y-%m-%dT%H:%M:%S.123456Z)"; fi
    printf '%s %s' prod-nbg1-cp-1 "$at"
    ;;`;

/** The kubectl call of that Lease read, as the fakes' call log shows it for `kubeconfig`. */
export const kubeVipLeaseCall = (kubeconfig: string, lease = kubeVipLease): string =>
  `kubectl --kubeconfig ${kubeconfig} -n kube-system get lease ${lease} -o jsonpath={.spec.holderIdentity} {.spec.renewTime}`;

/** Where restart_kube_vip_if_stale keeps the fingerprint of the admin.conf kube-vip started with. */
export const kubeVipSentinel = "/var/lib/kubernetes-node/kube-vip-admin-conf";
