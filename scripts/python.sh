#!/usr/bin/env bash
# The Python package's tests: builds the extension into a virtual environment
# of the project's own and runs pytest on python/tests.
#
#   scripts/python.sh                 set up (first run: a venv, packages from PyPI), build, test
#   scripts/python.sh -k numpy -x     extra arguments go to pytest
#
# The venv lives in target/python-venv (CHEST_PYTHON_VENV to move it), made
# with python3 (PYTHON to choose another); its packages come from the package
# index (python/requirements-test.txt), never from the system's site-packages.
# The extension is built with `maturin develop --release` into the workspace's
# target directory. The tests that read a chest back with the `chest` command
# use the target directory's debug/chest (CHEST_CLI to use another), built here if missing. S3 tests run when the servers'
# settings are in the environment (scripts/test.sh starts the servers and runs
# this script); with CHEST_REQUIRE_SERVERS=1 a missing server fails them.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${CHEST_PYTHON_VENV:-target/python-venv}
python=${PYTHON:-python3}
requirements=python/requirements-test.txt

if [[ ! -x $venv/bin/python ]]; then
    echo "python.sh: creating the virtual environment $venv" >&2
    "$python" -m venv "$venv"
fi
venv=$(cd "$venv" && pwd)
# Reinstall only when the requirements changed since the last install.
stamp=$venv/.requirements
if ! cmp -s "$requirements" "$stamp"; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
fi

# The extension, built in release (the tests move hundreds of MiB).
(cd python && VIRTUAL_ENV=$venv PATH=$venv/bin:$PATH maturin develop --release --quiet)

# The `chest` command, for the tests that read a chest written from Python
# (`cargo test --workspace` builds it; built here when this runs alone).
export CHEST_CLI=${CHEST_CLI:-${CARGO_TARGET_DIR:-$PWD/target}/debug/chest}
if [[ ! -x $CHEST_CLI ]]; then
    cargo build --quiet -p chest-cli
fi

exec "$venv/bin/python" -m pytest python/tests "$@"
