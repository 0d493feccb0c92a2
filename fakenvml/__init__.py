"""A stand-in NVIDIA Management Library: the real pynvml over scenario-driven fake GPUs.

Build the library with build_library(dir), write a Scenario to a file, and run the program
under test with LD_LIBRARY_PATH=<dir> and FAKENVML_SCENARIO=<file> (see docs/fakenvml.md).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from fakenvml.build import SONAME, BuildError, build_library
from fakenvml.driver_proc import write_driver_proc
from fakenvml.example import example_scenario
from fakenvml.scenario import Gpu, Process, Scenario, ScenarioError, XidEvent

__all__ = [
    "BuildError",
    "Gpu",
    "Process",
    "Scenario",
    "ScenarioError",
    "XidEvent",
    "build_library",
    "example_scenario",
    "preload",
    "write_driver_proc",
]


def preload(lib_dir: str | os.PathLike[str]) -> ctypes.CDLL:
    """Loads the library into this process, so pynvml's CDLL("libnvidia-ml.so.1") gets it.

    The dynamic loader matches an already loaded library by soname, which is how one
    process can use it without LD_LIBRARY_PATH (set before the process started). Only
    one libnvidia-ml.so.1 can be loaded per process.
    """
    return ctypes.CDLL(str(Path(lib_dir) / SONAME), mode=ctypes.RTLD_GLOBAL)
