# The image of the etcd-backup and etcd-defrag CronJobs (components/etcd/backup.ts, defrag.ts): bash,
# aws-cli, age, zstd, ssh-keygen (openssh-client: signs the backups' sidecars) and the etcd image's
# own etcdctl/etcdutl. The tests run the scripts with the same Debian aws-cli, age, zstd and
# ssh-keygen (tools/ensure-tools.sh), but with Debian's etcd 3.4 etcdctl (no etcdutl), not this
# image's 3.6: the tests run the etcdctl fallback, the etcdutl path runs only here.
#
#   docker build -f scripts/jobs/images/etcd-backup.Dockerfile -t registry.example.com/platform/etcd-backup:3.6.5-1 .
#   docker push registry.example.com/platform/etcd-backup:3.6.5-1
#   pulumi config set backupImage registry.example.com/platform/etcd-backup:3.6.5-1
#
# ETCD_IMAGE follows components/versions.ts (etcdImage): the etcd version kubeadm deploys.
ARG ETCD_IMAGE=registry.k8s.io/etcd:3.6.5-0
FROM ${ETCD_IMAGE} AS etcd

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      awscli age zstd ca-certificates jq curl tar openssh-client \
 && rm -rf /var/lib/apt/lists/*
COPY --from=etcd /usr/local/bin/etcdctl /usr/local/bin/etcdutl /usr/local/bin/
COPY scripts/node/lib.sh scripts/jobs/etcd-backup.sh scripts/jobs/etcd-defrag.sh /usr/local/bin/
# The CronJobs run the scripts from their ConfigMaps (so a script change needs no new image);
# the copies here serve manual runs: docker run --rm ... etcd-backup.sh --help (etcd-defrag.sh
# with --entrypoint). Both source lib.sh (the project's helper library, scripts/node/lib.sh) from
# their own directory, so it sits beside them.
ENTRYPOINT ["/bin/bash", "/usr/local/bin/etcd-backup.sh"]
