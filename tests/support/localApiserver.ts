/**
 * This node's kube-apiserver, for the tests of scripts that change its serving certificate
 * (apiserver-sans.sh): a REAL TLS server (`openssl s_server`) on a free loopback port that serves
 * the pair in $ROOT/etc/kubernetes/pki as it was when it started, started and stopped the way the
 * kubelet runs a static pod.
 *
 * - `apiserverKubelet`: bash for fakes (after nodeSandbox's prelude). `kubelet_sync_apiserver`
 *   does what the kubelet does with the kube-apiserver static pod (k8s.io/kubernetes
 *   pkg/kubelet/config/file.go watches /etc/kubernetes/manifests; a pod whose manifest goes away
 *   is killed, one whose manifest appears is started): with the manifest in
 *   $ROOT/etc/kubernetes/manifests and no server running, it starts one on
 *   127.0.0.1:$FAKE_APISERVER_PORT with the pair on disk right then (kube-apiserver reads
 *   --tls-cert-file/--tls-private-key-file when it starts) and appends the certificate's SHA-256
 *   fingerprint to $FAKE_CAPTURE/kube-apiserver.starts; without the manifest, it stops the
 *   server. A pair whose key does not match makes s_server exit, as kube-apiserver exits on it.
 *   FAKE_NEVER_GONE / FAKE_NEVER_BACK naming kube-apiserver (as for the fake crictl of
 *   tests/support/staticPods.ts) keep it running / never start it again. The fakes call it at
 *   every look at the node (crictl, kubectl's /readyz), standing in for the kubelet acting
 *   within a moment.
 * - `localReadyzArm`: the arm of a fake kubectl's `case "$*" in` for `kubectl --kubeconfig K
 *   --server https://IP:PORT get --raw /readyz`: no server there: `The connection to the server
 *   IP:PORT was refused - did you specify the right host or port?` (k8s.io/kubectl
 *   pkg/cmd/util/helpers.go), exit 1; otherwise the TLS handshake is checked as client-go does it
 *   (Go crypto/tls: the chain to the cluster CA of the kubeconfig, which kubeadm writes from
 *   pki/ca.crt, and the certificate valid for IP): a failure is `Unable to connect to the server:
 *   tls: failed to verify certificate: x509: ...`, exit 1; then `ok`. FAKE_FAIL=readyz: the API
 *   server answers not ready (`[-]etcd failed`, exit 1); FAKE_READYZ_FAILS_WITH=NAME: it does so
 *   while the served certificate carries the DNS name NAME (an API server that does not come up
 *   with a new certificate).
 * - `startApiserver(sandbox)` runs `kubelet_sync_apiserver` once (the node as it was before the
 *   script ran); `stopApiserver(sandbox)` stops the server by its PID (every test calls it).
 *
 * What this cannot prove: that a real kube-apiserver's /readyz behaves as this one (it answers ok
 * once TLS works) and reloads nothing it was not restarted for.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { prelude, type Sandbox } from "./nodeSandbox";

/** Real tools the fakes below run. */
export const localApiserverTools = ["grep", "kill", "openssl", "sed", "sleep"];

export const apiserverKubelet = `
apiserver_pid_file="$FAKE_CAPTURE/kube-apiserver.pid"
apiserver_alive() { [[ -f "$apiserver_pid_file" ]] && kill -0 "$(<"$apiserver_pid_file")" 2>/dev/null; }
kubelet_sync_apiserver() {
  local pki="$ROOT/etc/kubernetes/pki" i
  if [[ -f "$ROOT/etc/kubernetes/manifests/kube-apiserver.yaml" ]]; then
    if apiserver_alive || [[ ",\${FAKE_NEVER_BACK:-}," == *",kube-apiserver,"* ]]; then return 0; fi
    openssl s_server -quiet -accept "127.0.0.1:$FAKE_APISERVER_PORT" -cert "$pki/apiserver.crt" \\
      -key "$pki/apiserver.key" </dev/null >>"$FAKE_CAPTURE/kube-apiserver.log" 2>&1 &
    echo "$!" >"$apiserver_pid_file"
    openssl x509 -in "$pki/apiserver.crt" -noout -fingerprint -sha256 >>"$FAKE_CAPTURE/kube-apiserver.starts"
    for ((i = 0; i < 100; i++)); do
      if (: <"/dev/tcp/127.0.0.1/$FAKE_APISERVER_PORT") 2>/dev/null || ! apiserver_alive; then return 0; fi
      sleep 0.05
    done
  else
    if [[ ",\${FAKE_NEVER_GONE:-}," == *",kube-apiserver,"* ]] || ! apiserver_alive; then return 0; fi
    kill "$(<"$apiserver_pid_file")"
    for ((i = 0; i < 100; i++)); do apiserver_alive || break; sleep 0.05; done
    rm -f "$apiserver_pid_file"
  fi
}`;

export const localReadyzArm = `  *" --server https://"*" get --raw /readyz")
    kubelet_sync_apiserver
    server="$*"; server="\${server#* --server https://}"; server="\${server%% *}"
    if ! apiserver_alive || [[ "\${server#*:}" != "$FAKE_APISERVER_PORT" ]]; then
      echo "The connection to the server $server was refused - did you specify the right host or port?" >&2; exit 1
    fi
    if ! openssl s_client -connect "127.0.0.1:$FAKE_APISERVER_PORT" -CAfile "$ROOT/etc/kubernetes/pki/ca.crt" \\
      -verify_return_error -verify_ip "\${server%:*}" </dev/null >"$FAKE_CAPTURE/readyz-tls" 2>&1; then
      echo "Unable to connect to the server: tls: failed to verify certificate: x509: certificate is not valid for \${server%:*}" >&2; exit 1
    fi
    if fails readyz || { [[ -n "\${FAKE_READYZ_FAILS_WITH:-}" ]] &&
      openssl x509 -noout -ext subjectAltName <"$FAKE_CAPTURE/readyz-tls" | grep -q "DNS:$FAKE_READYZ_FAILS_WITH\\(,\\|$\\)"; }; then
      echo "Error from server (InternalError): an error on the server (\\"[-]etcd failed: reason withheld\\") has prevented the request from succeeding" >&2; exit 1
    fi
    echo ok
    ;;`;

/** The certificates the local API server was started with, in order (SHA-256 fingerprints). */
export function apiserverStarts(sandbox: Sandbox): string[] {
  const file = path.join(sandbox.capture, "kube-apiserver.starts");
  return fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim().split("\n") : [];
}

/** Runs the kubelet model once: starts the local API server when its manifest is in place. */
export function startApiserver(sandbox: Sandbox): void {
  const result = spawnSync("/bin/bash", ["-c", `${prelude}\n${apiserverKubelet}\nkubelet_sync_apiserver`], {
    env: { ...sandbox.env, FAKE_LOG: "/dev/null" },
    encoding: "utf8",
    timeout: 15_000,
  });
  if (result.status !== 0) throw new Error(`starting the local API server failed: ${result.stderr}`);
}

/** Stops the local API server by its PID, if it runs. */
export function stopApiserver(sandbox: Sandbox): void {
  const file = path.join(sandbox.capture, "kube-apiserver.pid");
  if (!fs.existsSync(file)) return;
  const pid = Number(fs.readFileSync(file, "utf8").trim());
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    // Gone already.
  }
  fs.rmSync(file, { force: true });
}
