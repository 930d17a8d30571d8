#!/usr/bin/env bash
# Run `tap-flows | target-bigquery-lite` without Meltano, keeping the state in a file.
#
#   scripts/run-pipe.sh --tap-config tap.json --target-config target.json --state state.json
#
# The state file is read with --state when it exists and is replaced only when the target
# exits 0, atomically (written to a temporary file in the same folder, fsynced, renamed), with
# the last STATE line the target printed. The target prints a STATE only after the rows before
# it are committed, so the file never points past the data. When the tap fails but the target
# still exits 0, the state saved covers what was committed and the script exits with the tap's
# code. A lock file stops two runs (e.g. cron and a hand-started one) from overlapping.
#
# Options: --tap CMD / --target CMD (default: tap-flows / target-bigquery-lite from .venv),
#          --lock FILE (default: STATE.lock).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
tap=$here/.venv/bin/tap-flows
target=$here/.venv/bin/target-bigquery-lite
tap_config="" target_config="" state="" lock=""

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while (($#)); do
  case $1 in
    --tap-config) tap_config=$2; shift 2 ;;
    --target-config) target_config=$2; shift 2 ;;
    --state) state=$2; shift 2 ;;
    --tap) tap=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --lock) lock=$2; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "run-pipe: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ -n $tap_config && -n $target_config && -n $state ]] || { echo "run-pipe: --tap-config, --target-config and --state are required" >&2; usage; }
for f in "$tap_config" "$target_config"; do
  [[ -r $f ]] || { echo "run-pipe: cannot read config file $f" >&2; exit 2; }
done

exec 9>"${lock:-$state.lock}"
if ! flock -n 9; then
  echo "run-pipe: another run holds ${lock:-$state.lock}; not starting a second one" >&2
  exit 75
fi

state_args=()
[[ -s $state ]] && state_args=(--state "$state")
out=$(mktemp "$state.out.XXXXXX")
tmp=""
trap 'rm -f "$out" ${tmp:+"$tmp"}' EXIT

started=$(date +%s)
set +e
"$tap" --config "$tap_config" "${state_args[@]}" | "$target" --config "$target_config" >"$out"
codes=("${PIPESTATUS[@]}")
set -e
tap_rc=${codes[0]} target_rc=${codes[1]}

if ((target_rc != 0)); then
  echo "run-pipe: target-bigquery-lite failed (exit $target_rc); state file $state left unchanged" >&2
  exit "$target_rc"
fi
last=$(tail -n 1 "$out")
if [[ -n $last ]]; then
  tmp=$(mktemp "$state.tmp.XXXXXX")
  printf '%s\n' "$last" >"$tmp"
  sync "$tmp"
  mv -f "$tmp" "$state"
  tmp=""
  echo "run-pipe: state saved to $state after $(($(date +%s) - started)) s: $last" >&2
else
  echo "run-pipe: the target emitted no state (nothing new); $state unchanged" >&2
fi
if ((tap_rc != 0)); then
  echo "run-pipe: tap-flows failed (exit $tap_rc); the saved state covers only what was committed" >&2
  exit "$tap_rc"
fi
