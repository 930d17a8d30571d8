#!/usr/bin/env bash
# Install the z3-target-bigquery baseline (PyPI) into .venv-z3 for `make bench`; quick when done.
#
# Its own virtualenv: z3-target-bigquery 0.7.2 pins an older singer-sdk than tap-flows. It
# needs setuptools < 81 because its dependency `fs` still imports pkg_resources (removed in
# setuptools 81). Offline use against the emulator is set up by bench/bench.py at run time
# (emulator host variable, a fake authorized_user credentials file, bench/z3_shim).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1 UV_COMPILE_BYTECODE=1

PACKAGES=("z3-target-bigquery==0.7.2" "setuptools<81")
hash=$(echo "${PACKAGES[*]}" | cat - bench/install-z3.sh | sha256sum | cut -c1-16)
[[ "$(cat .venv-z3/.installed 2>/dev/null)" == "$hash" ]] && exit 0

if command -v uv >/dev/null 2>&1; then UV=$(command -v uv); else UV=$ROOT/.tools/bin/uv; fi
echo "==> creating .venv-z3 (z3-target-bigquery, the benchmark's baseline)" >&2
rm -rf .venv-z3
"$UV" venv --quiet --python "$(scripts/find-python.sh 3.11 3.12)" .venv-z3
VIRTUAL_ENV=$ROOT/.venv-z3 "$UV" pip install --quiet "${PACKAGES[@]}"
echo "$hash" > .venv-z3/.installed
