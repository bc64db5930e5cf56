# The image of the etcd-backup and etcd-defrag CronJobs (components/etcd/backup.ts, defrag.ts) and of
# the kubelet-csr-approver Deployment (components/addons/csrApprover.ts): bash, aws-cli, age, zstd,
# jq, openssl, kubectl and the etcd image's own etcdctl/etcdutl. The tests run the scripts with the
# same Debian aws-cli, age and zstd (tools/ensure-tools.sh), but with Debian's etcd 3.4 etcdctl
# (no etcdutl), not this image's 3.6: the tests run the etcdctl fallback, the etcdutl path runs only here.
#
#   docker build -f scripts/jobs/images/etcd-backup.Dockerfile -t registry.example.com/platform/etcd-backup:3.6.5-1 .
#   docker push registry.example.com/platform/etcd-backup:3.6.5-1
#   pulumi config set backupImage registry.example.com/platform/etcd-backup:3.6.5-1
#
# ETCD_IMAGE follows components/versions.ts (etcdImage): the etcd version kubeadm deploys.
# KUBECTL_VERSION follows the stack's kubernetesVersion (kubectl supports one minor either side).
ARG ETCD_IMAGE=registry.k8s.io/etcd:3.6.5-0
ARG KUBECTL_VERSION=1.34.2
FROM ${ETCD_IMAGE} AS etcd

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      awscli age zstd ca-certificates jq curl tar openssl \
 && rm -rf /var/lib/apt/lists/*
# kubectl as the Kubernetes docs install it ("Install and Set Up kubectl on Linux"): the release
# binary from dl.k8s.io, checked against its published sha256.
ARG KUBECTL_VERSION
ARG TARGETARCH=amd64
RUN cd /tmp \
 && curl -fsSLO "https://dl.k8s.io/release/v${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl" \
 && curl -fsSLO "https://dl.k8s.io/release/v${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl.sha256" \
 && echo "$(cat kubectl.sha256)  kubectl" | sha256sum --check \
 && install -m 0755 kubectl /usr/local/bin/kubectl \
 && rm -f kubectl kubectl.sha256
COPY --from=etcd /usr/local/bin/etcdctl /usr/local/bin/etcdutl /usr/local/bin/
COPY scripts/node/lib.sh scripts/jobs/etcd-backup.sh scripts/jobs/etcd-defrag.sh /usr/local/bin/
COPY scripts/jobs/kubelet-csr-approver.sh /usr/local/bin/
# The CronJobs run the scripts from their ConfigMaps (so a script change needs no new image);
# the copies here serve manual runs: docker run --rm ... etcd-backup.sh --help (etcd-defrag.sh and
# kubelet-csr-approver.sh with --entrypoint). All source lib.sh (the project's helper library,
# scripts/node/lib.sh) from their own directory, so it sits beside them.
ENTRYPOINT ["/bin/bash", "/usr/local/bin/etcd-backup.sh"]
