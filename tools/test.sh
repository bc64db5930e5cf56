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

# The static checks and jest only read the tree (jest writes only under .tmp/ and the OS temp
# dir): they all run at the same time, each into its own log. Each static check's output is
# printed in order once it has ended, then jest's output as it comes. Every check runs to its
# end; any failure fails the run after all of them are shown.
mapfile -t shell_files < <(git ls-files -co --exclude-standard -- '*.sh' '.ci/run' | sort -u)
logs=$(mktemp -d)
jest_pid=""
cleanup() {
  if [ -n "$jest_pid" ]; then kill "$jest_pid" 2>/dev/null || true; fi
  rm -rf "$logs"
}
trap cleanup EXIT

mkdir -p .tmp
node_modules/.bin/jest --ci --json --outputFile=.tmp/jest-results.json "$@" >"$logs/jest.log" 2>&1 &
jest_pid=$!

check_titles=()
check_pids=()
check() {
  local title=$1
  shift
  "$@" >"$logs/${#check_pids[@]}.log" 2>&1 &
  check_titles+=("$title")
  check_pids+=("$!")
}
check "TypeScript (strict, no emit)" node_modules/.bin/tsc --noEmit -p tsconfig.json
check "ESLint (with @pulumi/eslint-plugin)" node_modules/.bin/eslint --max-warnings 0 .
check "Prettier" node_modules/.bin/prettier --check .
check "shellcheck" shellcheck "${shell_files[@]}"
failed=()
for i in "${!check_pids[@]}"; do
  step "${check_titles[$i]}"
  check_status=0
  wait "${check_pids[$i]}" || check_status=$?
  cat "$logs/$i.log"
  if [ "$check_status" -ne 0 ]; then
    echo "FAILED (exit $check_status)"
    failed+=("${check_titles[$i]}")
  elif [ "${check_titles[$i]}" = shellcheck ]; then
    echo "${#shell_files[@]} files clean: ${shell_files[*]}"
  fi
done

step "jest"
# Follows jest's log until jest has exited (tail reads what is left, then stops).
tail -n +1 -f --pid="$jest_pid" "$logs/jest.log"
jest_status=0
wait "$jest_pid" || jest_status=$?
jest_pid=""
# shellcheck disable=SC2016 # the quoted text is JavaScript, not shell
node -e '
  const r = require("./.tmp/jest-results.json");
  console.log(`jest: ${r.numPassedTests} passed, ${r.numFailedTests} failed`);
  if (r.numTotalTests === 0) { console.error("jest ran no test"); process.exit(1); }
'
if [ "$jest_status" -ne 0 ]; then failed+=(jest); fi
if [ "${#failed[@]}" -ne 0 ]; then
  printf '\nfailed: %s\n' "${failed[*]}" >&2
  exit 1
fi
