  # Arms of a fake kubectl's `case "$*" in` that read the fake cluster $FAKE_CAPTURE/cluster written
  # by tests/support/fake-kubeadm.sh; tests/support/fakeKubeadm.ts (fakeClusterKubectlArms) splices
  # them in and cites the kubectl behaviour they model. Uses the nodeSandbox prelude (fails, hangs).
  *" get nodes -l "*" --field-selector metadata.name="*' -o jsonpath={.items[*].metadata.name}')
    if hangs cluster-read; then exec sleep 30; fi
    if fails cluster-read; then
      echo "The connection to the server api.prod.example.com:6443 was refused - did you specify the right host or port?" >&2; exit 1
    fi
    args=("$@"); label="" name=""
    for ((i = 0; i < $#; i++)); do
      case "${args[i]}" in
        -l) label="${args[i + 1]}" ;;
        --field-selector) name="${args[i + 1]#metadata.name=}" ;;
      esac
    done
    node="$FAKE_CAPTURE/cluster/nodes/$name"
    if [[ -f "$node" ]] && grep -q "^$label=" "$node"; then printf '%s' "$name"; fi
    ;;
  *" get "*' -o jsonpath={.metadata.name}')
    if hangs cluster-read; then exec sleep 30; fi
    if fails cluster-read; then
      echo "The connection to the server api.prod.example.com:6443 was refused - did you specify the right host or port?" >&2; exit 1
    fi
    args=("$@"); namespace=default kind="" name=""
    for ((i = 0; i < $#; i++)); do
      case "${args[i]}" in
        -n) namespace="${args[i + 1]}" ;;
        get) kind="${args[i + 1]}" name="${args[i + 2]}" ;;
      esac
    done
    case "$kind" in
      configmap) resource=configmaps ;;
      deployment) resource=deployments.apps ;;
      daemonset) resource=daemonsets.apps ;;
      service) resource=services ;;
      *) echo "fake kubectl: unexpected resource $kind" >&2; exit 99 ;;
    esac
    if [[ -f "$FAKE_CAPTURE/cluster/objects/$namespace/$resource/$name" ]]; then printf '%s' "$name"; exit 0; fi
    echo "Error from server (NotFound): $resource "$name" not found" >&2
    exit 1
    ;;
