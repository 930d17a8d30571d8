#!/usr/bin/env bash
# Install everything `make demo` and `make test` need, into the project folder only:
#   uv (from PyPI, if not on PATH)  -> .tools/
#   .venv     Python 3.11: flows-api, tap-flows, target-bigquery-lite, dev-services and the
#             Dagster code location (orchestration/, with dagster and dagster-webserver), all
#             editable, meltano and the test tools. Dagster and Meltano resolve together in one
#             environment, so the tests can run Dagster jobs in-process next to meltano.
#   .venv-bq  Python >= 3.13: the local BigQuery emulator (local-bigquery) with DuckDB's
#             extensions installed offline from PyPI wheels
#   .venv-jsonl  target-jsonl, a second Singer target for the reuse tests
# Idempotent: each environment is rebuilt only when its inputs changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# Bytecode compiled at install: every tool start then skips recompiling (PYTHONDONTWRITEBYTECODE
# is common in containers and CI), ~0.7 s per process.
export UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1 UV_COMPILE_BYTECODE=1

say() { printf '==> %s\n' "$*" >&2; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# --- uv ---------------------------------------------------------------------------------------
if command -v uv >/dev/null 2>&1; then
  UV=$(command -v uv)
elif [[ -x .tools/bin/uv ]]; then
  UV=$ROOT/.tools/bin/uv
else
  say "installing uv from PyPI into .tools/"
  python3 -m venv .tools
  .tools/bin/pip install --quiet --disable-pip-version-check 'uv>=0.5'
  UV=$ROOT/.tools/bin/uv
fi

# --- .venv (Python 3.11) ----------------------------------------------------------------------
MAIN_INPUTS=(requirements-dev.txt flows-api/pyproject.toml tap-flows/pyproject.toml
  target-bigquery-lite/pyproject.toml dev-services/pyproject.toml orchestration/pyproject.toml
  scripts/install.sh)
main_hash=$(hash_of "${MAIN_INPUTS[@]}")
if [[ "$(cat .venv/.installed 2>/dev/null)" != "$main_hash" ]]; then
  py311=$(scripts/find-python.sh 3.11 3.12)
  if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    say "creating .venv with $py311"
    rm -rf .venv
    "$UV" venv --quiet --python "$py311" .venv
  fi
  say "installing the packages and test tools into .venv"
  VIRTUAL_ENV=$ROOT/.venv "$UV" pip install --quiet \
    -e ./flows-api -e ./tap-flows -e ./target-bigquery-lite -e ./dev-services -e ./orchestration \
    -r requirements-dev.txt
  echo "$main_hash" > .venv/.installed
fi

# --- .venv-bq (Python >= 3.13): the BigQuery emulator ------------------------------------------
# local-bigquery 0.4.0 declares duckdb>=2.0.0, but DuckDB's extension wheels (needed offline)
# exist only up to 1.5.5, so duckdb is overridden back to 1.5.5 in the same resolver call.
DUCKDB=1.5.5
BQ_PACKAGES=(local-bigquery==0.4.0 "duckdb-extensions==$DUCKDB" "duckdb-extension-icu==$DUCKDB"
  "duckdb-extension-ducklake==$DUCKDB" "duckdb-extension-spatial==$DUCKDB"
  "duckdb-extension-httpfs==$DUCKDB")
bq_hash=$(echo "${BQ_PACKAGES[*]}" | cat - scripts/install.sh | sha256sum | cut -c1-16)
if [[ "$(cat .venv-bq/.installed 2>/dev/null)" != "$bq_hash" ]]; then
  py313=$(scripts/find-python.sh 3.13)
  say "creating .venv-bq (BigQuery emulator) with $py313"
  rm -rf .venv-bq
  "$UV" venv --quiet --python "$py313" .venv-bq
  overrides=$(mktemp)
  echo "duckdb==$DUCKDB" > "$overrides"
  VIRTUAL_ENV=$ROOT/.venv-bq "$UV" pip install --quiet --override "$overrides" "${BQ_PACKAGES[@]}"
  rm -f "$overrides"
  # DuckDB loads extensions from $HOME/.duckdb/extensions/v<version>/<platform>/ and the emulator
  # has no setting for that: install them under .venv-bq/home, the HOME the emulator always runs with.
  mkdir -p .venv-bq/home
  HOME=$ROOT/.venv-bq/home .venv-bq/bin/python -c \
    'from duckdb_extensions import import_extension; [import_extension(n) for n in ("icu", "ducklake", "spatial", "httpfs")]'
  echo "$bq_hash" > .venv-bq/.installed
fi

# --- .venv-jsonl: target-jsonl from PyPI, to prove the tap works with another target ------------
# (its pins - singer-python 5, jsonschema 2.6 - cannot share .venv with singer-sdk)
JSONL_PACKAGES=("target-jsonl==0.1.4")
jsonl_hash=$(echo "${JSONL_PACKAGES[*]}" | sha256sum | cut -c1-16)
if [[ "$(cat .venv-jsonl/.installed 2>/dev/null)" != "$jsonl_hash" ]]; then
  say "creating .venv-jsonl (target-jsonl)"
  rm -rf .venv-jsonl
  "$UV" venv --quiet --python "$(scripts/find-python.sh 3.11 3.12)" .venv-jsonl
  VIRTUAL_ENV=$ROOT/.venv-jsonl "$UV" pip install --quiet "${JSONL_PACKAGES[@]}"
  echo "$jsonl_hash" > .venv-jsonl/.installed
fi

# --- Meltano plugins (.meltano/): tap-flows and target-bigquery-lite from the local folders,
# target-jsonl from PyPI, each in its own virtualenv as Meltano runs them.
meltano_hash=$(hash_of meltano.yml tap-flows/pyproject.toml target-bigquery-lite/pyproject.toml)
if [[ "$(cat .meltano/.installed 2>/dev/null)" != "$meltano_hash" ]]; then
  say "installing the Meltano plugins (meltano install)"
  .venv/bin/meltano install >/dev/null 2>.venv/meltano-install.log || {
    cat .venv/meltano-install.log >&2
    exit 1
  }
  echo "$meltano_hash" > .meltano/.installed
fi

# --- ZetaSQL (the strict BigQuery's SQL analyzer): compiling its WASM module takes a minute or
# two, so it is compiled once here and its machine code cached under .venv/.zetasql-cache/.
if ! compgen -G ".venv/.zetasql-cache/zetasql-*.cwasm" >/dev/null; then
  say "compiling ZetaSQL for the strict BigQuery (once, a minute or two)"
fi
.venv/bin/python -m dev_services.zetasql_engine >/dev/null

# Our own packages are installed editable, so their bytecode lives next to the sources.
.venv/bin/python -m compileall -q -j0 flows-api/flows_api tap-flows/tap_flows \
  target-bigquery-lite/target_bigquery_lite dev-services/dev_services \
  orchestration/flows_orchestration >/dev/null

say "installed: .venv ($(.venv/bin/python -V 2>&1)), .venv-bq ($(.venv-bq/bin/python -V 2>&1))"
