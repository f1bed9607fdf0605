"""Fixtures shared by the Python package's tests."""

import os
import shutil
import subprocess
import sys

import pytest


@pytest.fixture
def cli():
    """Runs the `chest` command (the Rust CLI) and returns its stdout."""
    path = os.environ.get("CHEST_CLI") or shutil.which("chest")
    if not path or not os.path.exists(path):
        pytest.fail("the chest command is needed (scripts/python.sh builds it and sets CHEST_CLI)")

    def run(*args, check=True):
        done = subprocess.run([path, *args], capture_output=True, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"chest {' '.join(args)}: {done.stderr.decode()}")
        return done

    return run


@pytest.fixture
def python_process():
    """Runs Python code in a new interpreter; returns its stdout."""

    def run(code, check=True):
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, timeout=300, text=True
        )
        if check and done.returncode != 0:
            raise AssertionError(f"child failed ({done.returncode}): {done.stderr}")
        return done

    return run
