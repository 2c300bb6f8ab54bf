# Shared helpers for scripts/*; source it, do not run it.

# ensure_venv NAME REQUIREMENTS: (re)create .venv/NAME from scripts/REQUIREMENTS unless its stamp
# (the sha256 of the requirements file) matches, so a warm run costs nothing. Needs only PyPI.
ensure_venv() {
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local venv="$root/.venv/$1" req="$root/scripts/$2"
  local stamp="$venv/.requirements.sha256" want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo "installing $2 into .venv/$1"
  rm -rf "$venv"
  mkdir -p "$root/.venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
}

# start_emulators TARGET_DIR: starts one Pub/Sub emulator and one bqemulator through the
# `emulators` binary (built from tests/), exports the PIPELINE_* endpoints, and stops both when
# this shell exits (the binary also stops them if our end of its stdin closes).
start_emulators() {
  local bin="$1/debug/emulators" line
  coproc EMULATORS { exec "$bin"; }
  EMULATORS_KEEP_PID=$EMULATORS_PID
  trap 'kill "$EMULATORS_KEEP_PID" 2>/dev/null; wait "$EMULATORS_KEEP_PID" 2>/dev/null || true' EXIT
  while IFS= read -r -t 120 line <&"${EMULATORS[0]}"; do
    case "$line" in
      export\ *) eval "$line"; echo "$line" ;;
      "# ready") break ;;
    esac
  done
  if [[ -z "${PIPELINE_PUBSUB_ENDPOINT:-}" ]]; then
    echo "the emulators did not start; see target/emulator-logs/" >&2
    return 1
  fi
}
