"""Runs the real pynvml over the stand-in library, one subprocess per check.

pynvml keeps the first libnvidia-ml.so.1 it loads for the life of the process, so every
check gets a fresh interpreter with LD_LIBRARY_PATH and FAKENVML_SCENARIO set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fakenvml import Scenario, build_library

# Shared by every snippet: pynvml as `n`, fakenvml's names, and `call`, which turns an
# NVML error into its pynvml class name so results compare as plain JSON.
PRELUDE = """\
import json, sys
import pynvml as n
from fakenvml import Gpu, Process, Scenario, XidEvent
SCENARIO = sys.argv[1]
def call(f, *args):
    try:
        return f(*args)
    except n.NVMLError as e:
        return type(e).__name__
out = {}
"""


@pytest.fixture(scope="session")
def lib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_library(tmp_path_factory.mktemp("fakenvml-lib"))


class PynvmlRunner:
    def __init__(self, lib_dir: Path, scenario_path: Path) -> None:
        self.lib_dir = lib_dir
        self.scenario_path = scenario_path

    def __call__(
        self, scenario: Scenario | None, code: str, lib_dir: Path | None = None, **env: str
    ) -> dict:
        """Writes ``scenario``, runs ``code`` after PRELUDE, returns its ``out`` dict."""
        if scenario is not None:
            scenario.write(self.scenario_path)
        full_env = {
            **os.environ,
            "LD_LIBRARY_PATH": str(lib_dir or self.lib_dir),
            "FAKENVML_SCENARIO": str(self.scenario_path),
            **env,
        }
        script = PRELUDE + textwrap.dedent(code) + "\nprint(json.dumps(out))\n"
        result = subprocess.run(
            [sys.executable, "-c", script, str(self.scenario_path)],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        self.stderr = result.stderr
        return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture
def run_pynvml(lib_dir: Path, tmp_path: Path) -> PynvmlRunner:
    return PynvmlRunner(lib_dir, tmp_path / "gpus.scn")
