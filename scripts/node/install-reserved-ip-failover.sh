#!/usr/bin/env bash
# Installs, updates or disables the reserved-IP failover companion on a control-plane node:
# the script, its systemd unit, its environment file and the Hetzner API token file.
# Pulumi runs it on every control-plane node with the token on stdin; it is safe to run again.
set -euo pipefail

readonly SCRIPT_NAME="install-reserved-ip-failover"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
readonly SERVICE="reserved-ip-failover.service"
readonly CONFIG_DIR="/etc/hcloud-control-plane"
readonly ENV_FILE="${CONFIG_DIR}/failover.env"
readonly TOKEN_FILE="${CONFIG_DIR}/failover-token"
readonly UNIT_FILE="/etc/systemd/system/${SERVICE}"
readonly SCRIPT_FILE="/usr/local/sbin/reserved-ip-failover.sh"

usage() {
  cat <<'EOF'
Usage: install-reserved-ip-failover.sh --floating-ip-id ID --address IP [--interface IF]
                                       [--root DIR]  < token
       install-reserved-ip-failover.sh --disable [--root DIR]

Installs the reserved-IP failover companion from the directory this script lives in, which
must also hold reserved-ip-failover.sh and reserved-ip-failover.service. Run as root.

Install (default), each step writing only what changed:
  /usr/local/sbin/reserved-ip-failover.sh             0755
  /etc/systemd/system/reserved-ip-failover.service    0644
  /etc/hcloud-control-plane/                          0700
  /etc/hcloud-control-plane/failover.env              0600  FLOATING_IP_ID, FLOATING_IP_ADDRESS,
                                                            INTERFACE
  /etc/hcloud-control-plane/failover-token            0600  the first line of stdin
then `systemctl daemon-reload` (when the unit changed), `systemctl enable --now`, and
`systemctl restart` when the script, unit or environment of an installed service changed.
A new token alone needs no restart: the service reads the token file before every API call.
So rotating the token is: run this again with the new token on stdin.

The token is read from stdin (first line) so it never appears on a command line, in the
environment or in this script's output.

Options:
  --floating-ip-id ID  Hetzner id of the Floating IP. Required to install.
  --address IP         The Floating IPv4 address. Required to install.
  --interface IF       Interface kube-vip adds the address to (default eth0).
  --disable            Stop and disable the service and delete the token file. The script,
                       unit and environment file stay (they hold no secret).
  --root DIR           Prefix for every file this script writes (default: $ROOT, else empty,
                       meaning /). For tests; systemctl still acts on this host.
  -h, --help           Show this help and exit.

Environment:
  ROOT                 Same as --root; the flag wins.

Exit status: 0 installed (or disabled), 1 a step failed, 2 usage error (including no token on
stdin).
EOF
}

floating_ip_id=""
address=""
interface="eth0"
disable=false
ROOT="${ROOT:-}"

readonly ipv4_pattern='^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$'

parse_args() {
  parse_flags --floating-ip-id=floating_ip_id --address=address --interface=interface --root=ROOT \
    --disable=disable=true -- "$@"

  check_root_dir
  if [[ "$disable" == true ]]; then
    return 0
  fi
  [[ "$floating_ip_id" =~ ^[1-9][0-9]*$ ]] ||
    usage_error "--floating-ip-id must be a positive integer, got '${floating_ip_id}'"
  [[ "$address" =~ $ipv4_pattern ]] || usage_error "--address must be an IPv4 address, got '${address}'"
  [[ "$interface" =~ ^[A-Za-z0-9_.-]{1,15}$ ]] ||
    usage_error "--interface must be a Linux interface name, got '${interface}'"
}

# A half-written file never replaces a good one: install_content stages next to the target, then
# renames; the EXIT trap removes a staged file a failure left behind.
trap remove_staged EXIT

# install_content MODE FILE: writes stdin to FILE with MODE unless FILE already has exactly that
# content and mode. Returns 0 when it wrote, 1 when FILE was already up to date.
install_content() {
  local mode="$1" file="$2"
  stage_file "$mode" "$file"
  if [[ -f "$file" ]] && cmp -s -- "$staged" "$file" &&
    [[ "$(stat -c '%a' -- "$file")" == "${mode#0}" ]]; then
    remove_staged
    return 1
  fi
  commit_staged "$file"
  return 0
}

read_token() {
  local token="" read_flags=()
  # Typed by hand: no echo, so the token does not land on the screen or in a terminal log.
  if [[ -t 0 ]]; then read_flags+=(-s -p "Hetzner API token: "); fi
  IFS= read -r "${read_flags[@]}" token || [[ -n "$token" ]] ||
    usage_error "no API token on stdin (pipe it in; it is never a flag)"
  if [[ -t 0 ]]; then printf '\n' >&2; fi
  token="${token%$'\r'}"
  [[ -n "$token" ]] || usage_error "no API token on stdin (the first line is empty)"
  [[ "$token" =~ ^[A-Za-z0-9._~+/=-]+$ ]] ||
    usage_error "the API token on stdin has characters an API token does not have (allowed: letters, digits and . _ ~ + / = -)"
  install -d -m 0700 "${ROOT}${CONFIG_DIR}"
  chmod 0700 "${ROOT}${CONFIG_DIR}"
  if install_content 0600 "${ROOT}${TOKEN_FILE}" <<<"$token"; then
    log "wrote ${TOKEN_FILE} (0600)"
  else
    log "${TOKEN_FILE} unchanged"
  fi
}

disable_service() {
  if [[ -f "${ROOT}${UNIT_FILE}" ]]; then
    systemctl disable --now "$SERVICE"
    log "stopped and disabled ${SERVICE}"
  else
    log "${UNIT_FILE} is not installed; nothing to stop"
  fi
  if [[ -e "${ROOT}${TOKEN_FILE}" ]]; then
    rm -f -- "${ROOT}${TOKEN_FILE}"
    log "removed ${TOKEN_FILE}"
  fi
}

install_service() {
  local source_dir unit_changed=false changed=false was_installed=false
  source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  [[ -f "${source_dir}/reserved-ip-failover.sh" && -f "${source_dir}/${SERVICE}" ]] ||
    die "reserved-ip-failover.sh and ${SERVICE} must be next to this script in ${source_dir}"

  # The token first: a missing token must not leave a service installed that cannot run.
  read_token

  if [[ -f "${ROOT}${UNIT_FILE}" ]]; then was_installed=true; fi
  install -d -m 0755 "${ROOT}/usr/local/sbin" "${ROOT}/etc/systemd/system"
  if install_content 0755 "${ROOT}${SCRIPT_FILE}" <"${source_dir}/reserved-ip-failover.sh"; then
    log "wrote ${SCRIPT_FILE}"
    changed=true
  fi
  if install_content 0644 "${ROOT}${UNIT_FILE}" <"${source_dir}/${SERVICE}"; then
    log "wrote ${UNIT_FILE}"
    unit_changed=true
    changed=true
  fi
  if install_content 0600 "${ROOT}${ENV_FILE}" <<EOF; then
# Written by install-reserved-ip-failover.sh; read by ${SERVICE}. The token is not here.
FLOATING_IP_ID=${floating_ip_id}
FLOATING_IP_ADDRESS=${address}
INTERFACE=${interface}
EOF
    log "wrote ${ENV_FILE} (floating IP ${floating_ip_id}, ${address} on ${interface})"
    changed=true
  fi

  if [[ "$unit_changed" == true ]]; then
    systemctl daemon-reload
  fi
  systemctl enable --now "$SERVICE"
  if [[ "$changed" == true && "$was_installed" == true ]]; then
    systemctl restart "$SERVICE"
    log "restarted ${SERVICE} to pick up the change"
  elif [[ "$changed" == false ]]; then
    log "script, unit and environment unchanged; ${SERVICE} left running as it was"
  fi
  log "installed: ${SERVICE} enabled and started"
}

main() {
  parse_args "$@"
  require_root
  command -v systemctl >/dev/null || die "'systemctl' not found on PATH"
  if [[ "$disable" == true ]]; then
    disable_service
  else
    install_service
  fi
}

main "$@"
