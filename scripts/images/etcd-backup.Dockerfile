# The image of the etcd-backup CronJob (components/backup.ts): bash, aws-cli, age, zstd and the
# etcd image's own etcdctl/etcdutl. The tests run scripts/etcd-backup.sh with the same Debian
# packages (scripts/ensure-tools.sh), so what runs in the cluster is what was tested.
#
#   docker build -f scripts/images/etcd-backup.Dockerfile -t registry.example.com/platform/etcd-backup:3.6.5-1 .
#   docker push registry.example.com/platform/etcd-backup:3.6.5-1
#   pulumi config set backupImage registry.example.com/platform/etcd-backup:3.6.5-1
#
# ETCD_IMAGE follows components/versions.ts (etcdImage): the etcd version kubeadm deploys.
ARG ETCD_IMAGE=registry.k8s.io/etcd:3.6.5-0
FROM ${ETCD_IMAGE} AS etcd

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      awscli age zstd ca-certificates jq curl tar \
 && rm -rf /var/lib/apt/lists/*
COPY --from=etcd /usr/local/bin/etcdctl /usr/local/bin/etcdutl /usr/local/bin/
COPY scripts/etcd-backup.sh /usr/local/bin/etcd-backup.sh
# The CronJob runs the script from its ConfigMap (so a script change needs no new image);
# the copy here serves manual runs: docker run --rm ... etcd-backup.sh --help
ENTRYPOINT ["/bin/bash", "/usr/local/bin/etcd-backup.sh"]
