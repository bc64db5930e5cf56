/**
 * `kubectl exec etcd-NODE -- etcdctl ...` against a REAL etcd (tests/support/etcdCluster.ts), for
 * the fake kubectl of node-script tests whose gates must see real etcd health
 * (lib.sh's etcd_cluster_healthy).
 *
 * - `etcdPodExecArm`: the arm of a fake kubectl's `case "$*" in`. The pod etcd-NODE exists when
 *   $FAKE_CAPTURE/etcd-pods/NODE holds the client URL of its member (else kubectl's `Error from
 *   server (NotFound): pods "etcd-NODE" not found`, exit 1). The command runs with the real
 *   $FAKE_ETCDCTL (ETCDCTL_API=3): the certificate paths as mounted in the pod become the test
 *   cluster's ($FAKE_ETCD_CACERT, $FAKE_ETCD_CERT, $FAKE_ETCD_KEY) and https://127.0.0.1:2379, the
 *   member's own client URL in its pod (kubeadm's etcd listens on 127.0.0.1 and the node IP),
 *   becomes NODE's URL; every other endpoint is used as it is. kubectl exec passes etcdctl's exit
 *   status on and says "command terminated with exit code N" (k8s.io/kubectl pkg/cmd/exec/exec.go
 *   streams through client-go's remotecommand, which reports a non-zero exit as a
 *   utilexec.CodeExitError; pkg/cmd/util/helpers.go checkErr prints it and exits N).
 * - `etcdPodEnv(cluster)`: the environment those variables come from; `addEtcdPod(sandbox, node,
 *   url)`: the pod etcd-NODE for the member at url.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type EtcdCluster, etcdctlBinary } from "./etcdCluster";
import type { Sandbox } from "./nodeSandbox";

export const etcdPodExecArm = `  *" -n kube-system exec etcd-"*" -- etcdctl "*)
    argv=("$@") pod="" command=() mapped=()
    for ((i = 0; i < $#; i++)); do
      if [[ "\${argv[i]}" == exec ]]; then pod="\${argv[i + 1]}"; fi
      if [[ "\${argv[i]}" == -- ]]; then command=("\${argv[@]:i + 2}"); break; fi
    done
    if [[ ! -f "$FAKE_CAPTURE/etcd-pods/\${pod#etcd-}" ]]; then
      printf 'Error from server (NotFound): pods "%s" not found\\n' "$pod" >&2; exit 1
    fi
    local_url="$(<"$FAKE_CAPTURE/etcd-pods/\${pod#etcd-}")"
    for a in "\${command[@]}"; do
      case "$a" in
        /etc/kubernetes/pki/etcd/ca.crt) a="$FAKE_ETCD_CACERT" ;;
        /etc/kubernetes/pki/etcd/healthcheck-client.crt) a="$FAKE_ETCD_CERT" ;;
        /etc/kubernetes/pki/etcd/healthcheck-client.key) a="$FAKE_ETCD_KEY" ;;
        *://*)
          IFS=, read -r -a urls <<<"$a"
          for j in "\${!urls[@]}"; do [[ "\${urls[j]}" != https://127.0.0.1:2379 ]] || urls[j]="$local_url"; done
          a="$(IFS=,; printf '%s' "\${urls[*]}")"
          ;;
      esac
      mapped+=("$a")
    done
    status=0
    ETCDCTL_API=3 "$FAKE_ETCDCTL" "\${mapped[@]}" || status=$?
    if ((status != 0)); then echo "command terminated with exit code $status" >&2; exit "$status"; fi
    ;;`;

/** The fake's environment for a TLS cluster (EtcdCluster.create({ tls: true })). */
export function etcdPodEnv(cluster: EtcdCluster): Record<string, string> {
  const tls = cluster.tls;
  if (!tls) throw new Error("etcdPodEnv: the cluster has no TLS");
  return {
    FAKE_ETCDCTL: etcdctlBinary,
    FAKE_ETCD_CACERT: tls.caCert,
    FAKE_ETCD_CERT: tls.clientCert,
    FAKE_ETCD_KEY: tls.clientKey,
  };
}

/** The pod etcd-NODE, whose member answers at `clientUrl`. */
export function addEtcdPod(sandbox: Sandbox, node: string, clientUrl: string): void {
  fs.mkdirSync(path.join(sandbox.capture, "etcd-pods"), { recursive: true });
  fs.writeFileSync(path.join(sandbox.capture, "etcd-pods", node), clientUrl);
}
