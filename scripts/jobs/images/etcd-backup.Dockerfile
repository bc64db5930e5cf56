# The image of the etcd-backup and etcd-defrag CronJobs (components/etcd/backup.ts, defrag.ts) and of
# the kubelet-csr-approver Deployment (components/addons/csrApprover.ts: kubectl, jq, openssl). Built and pushed by
# .github/workflows/backup-image.yml, which prints the digest to set in backupImage (README,
# "Backups"). Every input is pinned, so a rebuild of one commit installs the same software:
#   - the base image by digest;
#   - Debian packages by version (apt `name=version`): the versions bookworm (with
#     bookworm-security) ships. When Debian supersedes one (a security update), apt no longer
#     finds it and the build fails naming the package: bump it here (`apt-cache policy NAME` on
#     bookworm) and rebuild;
#   - etcdctl/etcdutl and kubectl from their upstream release downloads, each checked against the
#     sha256 written here before use.
# The tests run the scripts with the same Debian aws-cli, age and zstd (tools/ensure-tools.sh),
# but with Debian's etcd 3.4 etcdctl (no etcdutl), not this image's 3.6: the tests run the
# etcdctl fallback, the etcdutl path runs only here. tests/workflows.test.ts checks this file.
#
# By hand (the workflow does the same; pin the digest it pushed, never a tag):
#   docker buildx build -f scripts/jobs/images/etcd-backup.Dockerfile --platform linux/amd64 -t <image>:<tag> --push .

# debian:bookworm-slim, the digest of its multi-architecture index (the pin Renovate proposed in
# MathiasPius/kronform#323 and void-community/Void#1411). Bump it with the Debian packages below.
ARG DEBIAN_IMAGE=debian:bookworm-slim@sha256:88200866dfff7ea7f5cbcb6ec7c8a701889efe6fe859fe64d6990e4b07ea4171

FROM ${DEBIAN_IMAGE} AS fetch
# etcd 3.6.5: the etcd kubeadm deploys for the supported Kubernetes minors (components/versions.ts,
# etcdImage; a test holds them equal). etcdctl 3.6 speaks the v3 API of 3.5 and 3.6 servers;
# etcdutl carries `snapshot status/restore`, which 3.6 removed from etcdctl. Debian bookworm's
# etcd-client is 3.4 and has no etcdutl. sha256 of the release archives: SHA256SUMS of
# https://github.com/etcd-io/etcd/releases/tag/v3.6.5.
ARG ETCD_VERSION=3.6.5
ARG ETCD_SHA256_AMD64=66bad39ed920f6fc15fd74adcb8bfd38ba9a6412f8c7852d09eb11670e88cac3
ARG ETCD_SHA256_ARM64=7010161787077b07de29b15b76825ceacbbcedcb77fe2e6832f509be102cab6b
# kubectl, within one minor of the clusters' Kubernetes (a test holds it to the default
# kubernetesVersion's minor). sha256: https://dl.k8s.io/release/v<version>/bin/linux/<arch>/kubectl.sha256.
ARG KUBECTL_VERSION=1.34.2
ARG KUBECTL_SHA256_AMD64=9591f3d75e1581f3f7392e6ad119aab2f28ae7d6c6e083dc5d22469667f27253
ARG KUBECTL_SHA256_ARM64=95df604e914941f3172a93fa8feeb1a1a50f4011dfbe0c01e01b660afc8f9b85
# Set by BuildKit from --platform.
ARG TARGETARCH
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates=20250419~deb12u2 \
      curl=7.88.1-10+deb12u15 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /fetch
RUN arch="${TARGETARCH:-amd64}" \
 && case "$arch" in \
      amd64) etcd_sha256="$ETCD_SHA256_AMD64" kubectl_sha256="$KUBECTL_SHA256_AMD64" ;; \
      arm64) etcd_sha256="$ETCD_SHA256_ARM64" kubectl_sha256="$KUBECTL_SHA256_ARM64" ;; \
      *) echo "no pinned checksums for architecture '$arch'" >&2; exit 1 ;; \
    esac \
 && etcd="etcd-v${ETCD_VERSION}-linux-${arch}" \
 && curl -fsSL --retry 3 --connect-timeout 20 --max-time 600 -o etcd.tar.gz \
      "https://github.com/etcd-io/etcd/releases/download/v${ETCD_VERSION}/${etcd}.tar.gz" \
 && echo "${etcd_sha256}  etcd.tar.gz" | sha256sum --strict -c - \
 && tar -xzf etcd.tar.gz --strip-components=1 "${etcd}/etcdctl" "${etcd}/etcdutl" \
 && curl -fsSL --retry 3 --connect-timeout 20 --max-time 600 -o kubectl \
      "https://dl.k8s.io/release/v${KUBECTL_VERSION}/bin/linux/${arch}/kubectl" \
 && echo "${kubectl_sha256}  kubectl" | sha256sum --strict -c - \
 && install -D -m 0755 -t /fetch/bin etcdctl etcdutl kubectl

FROM ${DEBIAN_IMAGE}
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# What the job scripts run (their `require_tools` lines and --help): curl, aws-cli, age, zstd, jq
# and openssl (etcd-backup.sh; curl writes the objects, aws-cli lists and deletes, openssl hashes
# the snapshot), ssh-keygen of openssh-client (signs the backup's sidecar), curl, openssl and jq
# (jobs that talk to the API with kubectl), ca-certificates (TLS to Object Storage). tar,
# coreutils (timeout, base64) and bash are in the base image. libssl3 and libzstd1 are pinned
# with openssl and zstd, so the base image's older libraries are upgraded with them.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      age=1.1.1-1+b3 \
      awscli=2.9.19-1 \
      ca-certificates=20250419~deb12u2 \
      curl=7.88.1-10+deb12u15 \
      jq=1.6-2.1+deb12u3 \
      libssl3=3.0.22-1~deb12u2 \
      libzstd1=1.5.4+dfsg2-5+deb12u1 \
      openssh-client=1:9.2p1-2+deb12u10 \
      openssl=3.0.22-1~deb12u2 \
      zstd=1.5.4+dfsg2-5+deb12u1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=fetch /fetch/bin/etcdctl /fetch/bin/etcdutl /fetch/bin/kubectl /usr/local/bin/
COPY scripts/node/lib.sh scripts/jobs/etcd-backup.sh scripts/jobs/etcd-defrag.sh scripts/jobs/kubelet-csr-approver.sh /usr/local/bin/
# Every tool runs in the image as built (a missing library fails the build, not a backup).
RUN etcdctl version && etcdutl version && kubectl version --client \
 && aws --version && age --version && zstd --version && jq --version \
 && ssh -V && command -v ssh-keygen && openssl version && curl --version
# The CronJobs run the scripts from their ConfigMaps (so a script change needs no new image);
# the copies here serve manual runs: docker run --rm ... etcd-backup.sh --help (etcd-defrag.sh and
# kubelet-csr-approver.sh with --entrypoint). All source lib.sh (the project's helper library,
# scripts/node/lib.sh) from their own directory, so it sits beside them.
ENTRYPOINT ["/bin/bash", "/usr/local/bin/etcd-backup.sh"]
