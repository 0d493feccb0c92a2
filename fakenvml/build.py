"""Compiles fakenvml.c into a libnvidia-ml.so.1 with the system C compiler, when stale."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

SOURCE = Path(__file__).with_name("fakenvml.c")
SONAME = "libnvidia-ml.so.1"
CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-fPIC", "-fvisibility=hidden", "-pthread"]


class BuildError(RuntimeError):
    """The stand-in library could not be built."""


def exported_functions(source: str | None = None) -> list[str]:
    """The NVML functions fakenvml.c exports, in source order."""
    text = SOURCE.read_text() if source is None else source
    # Defined either as `API nvmlReturn_t nvmlX(` or through SCALAR_GETTER/RUNNING_PROCESSES.
    pattern = r"^(?:API [^(]*?\b|SCALAR_GETTER\(|RUNNING_PROCESSES\()(nvml\w+)[(,]"
    return re.findall(pattern, text, flags=re.M)


def build_library(out_dir: str | os.PathLike[str], omit: Iterable[str] = ()) -> Path:
    """Returns a directory holding libnvidia-ml.so.1, (re)built only when stale.

    With ``omit``, the variant lacks those symbols, as an older driver's library would
    (pynvml then raises NVMLError_FunctionNotFound); it gets its own subdirectory so
    variants never overwrite each other.
    """
    omit = sorted(set(omit))
    source = SOURCE.read_text()
    unknown = set(omit) - set(exported_functions(source))
    if unknown:
        raise BuildError(f"cannot omit {sorted(unknown)}: fakenvml.c does not export them")
    lib_dir = Path(out_dir)
    if omit:
        lib_dir /= "omit-" + hashlib.sha256(" ".join(omit).encode()).hexdigest()[:12]
    lib_dir.mkdir(parents=True, exist_ok=True)
    cc = shlex.split(os.environ.get("CC", "cc"))
    # Omitted names become local through a linker version script: an exact name there
    # wins over the `global: *` wildcard, so the C source needs no #ifdef per function.
    local = "local: " + "".join(f"{name}; " for name in omit) if omit else ""
    version_script = "{ global: *; " + local + "};\n"
    stamp = hashlib.sha256(repr((source, cc, CFLAGS, version_script)).encode()).hexdigest()
    library, stamp_file = lib_dir / SONAME, lib_dir / f"{SONAME}.stamp"
    if library.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return lib_dir
    with tempfile.TemporaryDirectory(dir=lib_dir, prefix=".build-") as tmp:
        script = Path(tmp, "exports.map")
        script.write_text(version_script)
        output = Path(tmp, SONAME)
        command = [*cc, *CFLAGS, "-shared", f"-Wl,-soname,{SONAME}"]
        command += [f"-Wl,--version-script={script}", "-o", str(output), str(SOURCE)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as e:
            raise BuildError(f"cannot run the C compiler {cc[0]!r}: {e}") from e
        if result.returncode != 0:
            raise BuildError(f"{shlex.join(command)} failed:\n{result.stderr.strip()}")
        output.chmod(0o755)
        # Replace, never rewrite in place: a running process may have the old one mapped.
        os.replace(output, library)
    stamp_file.write_text(stamp)
    return lib_dir
