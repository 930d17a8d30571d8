#!/usr/bin/env bash
# Print the path of a working Python interpreter with MIN <= version < MAX.
# Looks at $PYTHON_<MIN without dot> (e.g. PYTHON_313), PATH and pyenv's versions; pyenv
# shims of inactive versions are skipped because they fail when run.
# Usage: find-python.sh MIN [MAX]     e.g. find-python.sh 3.13   find-python.sh 3.11 3.12
set -euo pipefail
min=$1 max=${2:-4.0}
override_var="PYTHON_${min//./}"
candidates=()
[[ -n "${!override_var:-}" ]] && candidates+=("${!override_var}")
for v in 3.15 3.14 3.13 3.12 3.11; do
  command -v "python$v" >/dev/null 2>&1 && candidates+=("$(command -v "python$v")")
done
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root)
  for d in $(ls -d "$root"/versions/3.* 2>/dev/null | sort -rV); do
    candidates+=("$d/bin/python3")
  done
fi
candidates+=(python3)
for c in "${candidates[@]}"; do
  if out=$("$c" -c "import sys
lo = tuple(map(int, '$min'.split('.'))); hi = tuple(map(int, '$max'.split('.')))
v = sys.version_info[:2]
print(sys.executable if lo <= v < hi else '')" 2>/dev/null) && [[ -n "$out" ]]; then
    echo "$out"
    exit 0
  fi
done
echo "error: no Python >= $min${2:+ and < $max} found (looked at PATH and pyenv)." >&2
echo "       Install one, e.g. 'pyenv install $min', or set $override_var=/path/to/python$min." >&2
exit 1
