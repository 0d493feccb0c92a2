"""The exporter stays lean: none of the hub's, the notebook server's or Kubernetes' libraries
are imported into it, whatever the collectors (its memory target, docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("tornado", "jupyterhub", "jupyter_server", "sqlalchemy", "kubernetes", "ipykernel")
IMPORT_ALL = """
import json, sys
from dlcourse_exporter import app, cli, exposition, scheduler, server
from dlcourse_exporter.collectors import COLLECTORS
from dlcourse_exporter.sources import SOURCES
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.mark.live
def test_importing_every_part_of_the_exporter_brings_no_heavy_library():
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert "dlcourse_exporter" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
