#!/usr/bin/env bash
# `npm test`: installs what the tests need, then type checks, lints, checks the shell
# scripts and runs every jest test. Nothing is skipped; a missing tool fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "npm packages"
bash tools/ensure-npm.sh
echo "node_modules matches package-lock.json"

step "Debian tools"
bash tools/ensure-tools.sh
echo "cloud-init $(cloud-init --version 2>&1 | awk '{print $2}'), shellcheck $(shellcheck --version | awk '/^version:/ {print $2}')"

step "TypeScript (strict, no emit)"
npx tsc --noEmit -p tsconfig.json

step "ESLint (with @pulumi/eslint-plugin)"
npx eslint --max-warnings 0 .

step "Prettier"
npx prettier --check .

step "shellcheck"
mapfile -t shell_files < <(git ls-files -co --exclude-standard -- '*.sh' '.ci/run' | sort -u)
shellcheck "${shell_files[@]}"
echo "${#shell_files[@]} files clean: ${shell_files[*]}"

step "jest"
mkdir -p .tmp
status=0
npx jest --ci --json --outputFile=.tmp/jest-results.json "$@" || status=$?
# shellcheck disable=SC2016 # the quoted text is JavaScript, not shell
node -e '
  const r = require("./.tmp/jest-results.json");
  console.log(`jest: ${r.numPassedTests} passed, ${r.numFailedTests} failed`);
  if (r.numTotalTests === 0) { console.error("jest ran no test"); process.exit(1); }
'
exit "$status"
