#!/usr/bin/env bash
# `npm run plan`: the offline plan (tools/plan.ts), after making sure npm packages exist.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/ensure-npm.sh
exec node_modules/.bin/ts-node --transpile-only tools/plan.ts "$@"
