#!/usr/bin/env bash
# Installs the npm packages from package-lock.json when node_modules is missing or older
# than the lockfile, so the README's commands work on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "Installing npm packages (npm ci)..." >&2
  npm ci --no-audit --no-fund >&2
fi
