#!/usr/bin/env bash
# Tests scripts/check-prereqs by running it with a PATH that lacks chosen tools: a directory of
# symlinks to everything on the real PATH except those. Needs the real PATH to pass (this
# machine's tools); takes a few seconds.
#
# Usage: tests/scripts/test_check_prereqs.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
check="$root/scripts/check-prereqs"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0 passed=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; passed=$((passed + 1)); }

# A directory of links to every command on PATH, built once; python3 is linked to the interpreter
# itself (a pyenv shim would need pyenv's own PATH entries).
base="$tmp/base"
mkdir -p "$base"
ln -s "$(python3 -c 'import sys; print(sys.executable)')" "$base/python3"
IFS=: read -r -a path_dirs <<< "$PATH"
for d in "${path_dirs[@]}"; do
  [[ -d "$d" ]] || continue
  for f in "$d"/*; do
    name="${f##*/}"
    [[ -x "$f" && ! -e "$base/$name" ]] && ln -s "$f" "$base/$name"
  done
done

# fake_path DIR TOOL...: DIR holds the links of base without TOOL...
fake_path() {
  local dir="$1" t; shift
  mkdir -p "$(dirname "$dir")"
  cp -a "$base" "$dir"
  for t in "$@"; do rm -f "$dir/$t"; done
}

# expect_missing LABEL ARGS -- TOOL... -- NEEDLE...: check-prereqs ARGS with TOOLs removed from
# PATH must exit 1 and print every NEEDLE.
expect_missing() {
  local label="$1"; shift
  local args=() tools=() needles=()
  while [[ $1 != -- ]]; do args+=("$1"); shift; done; shift
  while [[ $1 != -- ]]; do tools+=("$1"); shift; done; shift
  needles=("$@")
  local dir="$tmp/$label" out status=0
  fake_path "$dir/bin" "${tools[@]}"
  out="$(PATH="$dir/bin" "$dir/bin/bash" "$check" "${args[@]}" 2>&1)" || status=$?
  if [[ $status -ne 1 ]]; then fail "$label: exit $status, want 1; output: $out"; return; fi
  local n
  for n in "${needles[@]}"; do
    if [[ "$out" != *"$n"* ]]; then fail "$label: output lacks '$n': $out"; return; fi
  done
  ok "$label"
}

# 1. This machine has everything: both targets pass.
for t in run-local test; do
  if out="$("$check" --for "$t" 2>&1)"; then ok "all present ($t)"; else fail "all present ($t): $out"; fi
done

# 2. No java: named, with both install commands.
expect_missing no-java --for run-local -- java -- \
  "- java: not found" "sudo apt-get install openjdk-17-jre-headless" "brew install openjdk@17"

# 3. Several missing at once: every one is listed in the same run, not just the first.
expect_missing several --for test -- java terraform curl -- \
  "3 missing" "- java:" "- terraform:" "brew install hashicorp/tap/terraform" "- curl:" \
  "sudo apt-get install curl"

# 4. terraform is needed by scripts/test only.
dir="$tmp/no-terraform-run-local"
fake_path "$dir/bin" terraform
if out="$(PATH="$dir/bin" "$dir/bin/bash" "$check" --for run-local 2>&1)"; then
  ok "run-local does not need terraform"
else
  fail "run-local without terraform: $out"
fi

# 5. A BSD-like date (no -d): GNU coreutils named, with the Homebrew command.
dir="$tmp/bsd-date"
fake_path "$dir/bin" date
cat > "$dir/bin/date" <<'EOF'
#!/bin/sh
for a in "$@"; do [ "$a" = -d ] && { echo "date: illegal option -- d" >&2; exit 1; }; done
exec /bin/date "$@"
EOF
chmod +x "$dir/bin/date"
out="$(PATH="$dir/bin" "$dir/bin/bash" "$check" --for run-local 2>&1)" && status=0 || status=$?
if [[ $status -eq 1 && "$out" == *"GNU date"* && "$out" == *"brew install coreutils"* ]]; then
  ok "BSD date"
else
  fail "BSD date: exit $status: $out"
fi

# 6. Bad arguments are usage errors (2), not a verdict.
if "$check" --for nonsense >/dev/null 2>&1; then fail "--for nonsense passed"
elif [[ $? -eq 2 ]]; then ok "usage error"
else fail "--for nonsense: want exit 2"; fi

echo "test_check_prereqs: $passed passed, $failures failed"
[[ $failures -eq 0 ]]
