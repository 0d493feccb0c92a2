"""A kernel's notes of its own CUDA out-of-memory errors: written by the IPython extension
every student kernel loads, read by the exporter only as the student's own, bounded."""

from __future__ import annotations

import json
import os

import pytest
from IPython.core.interactiveshell import ExecutionResult

from dlcourse_exporter.sources import kernel_errors
from dlcourse_exporter.sources.kernel_errors import (
    MAX_RECORDS,
    GpuError,
    errors_path,
    parse_records,
    read_gpu_errors,
)
from dlcourse_installer.probes import kernel_gpu_errors as extension

TORCH = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 40 GiB"


class ResourceExhaustedError(Exception):
    """TensorFlow's class name, which the extension recognises with "OOM" in the text."""


def cell_raising(error: BaseException) -> ExecutionResult:
    result = ExecutionResult(None)
    result.error_in_exec = error
    return result


def test_the_extension_and_the_exporter_agree_on_the_file():
    assert extension.SUFFIX == kernel_errors.SUFFIX
    connection = "/home/jupyter-ada/.local/share/jupyter/runtime/kernel-1f2e.json"
    assert extension.errors_path(connection) == errors_path(connection)
    assert errors_path(connection).endswith("/kernel-1f2e-gpu-errors.jsonl")
    assert errors_path("kernel-1f2e.json") is None  # relative: not where anything is
    assert errors_path("/tmp/kernel.ini") is None


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(TORCH),
        RuntimeError("CUDA error: CUDA_ERROR_OUT_OF_MEMORY"),
        ResourceExhaustedError("OOM when allocating tensor with shape[8192,8192]"),
    ],
    ids=["pytorch", "cuda-driver", "tensorflow"],
)
def test_the_extension_notes_cuda_oom_errors_for_the_exporter(tmp_path, error):
    path = str(tmp_path / "kernel-1-gpu-errors.jsonl")
    extension.GpuErrorNotes(path).post_run_cell(cell_raising(error))
    (found,) = read_gpu_errors(path, os.getuid())
    assert found.pid == os.getpid() and found.error == "cuda_oom"
    assert found.message == str(error)[:200]


def test_the_extension_follows_the_cause_and_ignores_everything_else(tmp_path):
    path = tmp_path / "kernel-1-gpu-errors.jsonl"
    notes = extension.GpuErrorNotes(str(path))
    for error in (ValueError("shapes do not match"), KeyboardInterrupt(), None):
        notes.post_run_cell(cell_raising(error) if error else ExecutionResult(None))
    notes.post_run_cell(object())  # whatever IPython hands over, the kernel is never hurt
    assert not path.exists()
    try:
        try:
            raise RuntimeError(TORCH)
        except RuntimeError as inner:
            raise ValueError("training step failed") from inner
    except ValueError as outer:
        notes.post_run_cell(cell_raising(outer))
    assert [e.message for e in read_gpu_errors(str(path), os.getuid())] == [TORCH]


def test_the_extension_stops_writing_at_its_size_cap(tmp_path):
    path = tmp_path / "kernel-1-gpu-errors.jsonl"
    path.write_bytes(b"x" * extension.MAX_FILE_BYTES)
    extension.GpuErrorNotes(str(path)).post_run_cell(cell_raising(RuntimeError(TORCH)))
    assert path.stat().st_size == extension.MAX_FILE_BYTES


def test_only_a_regular_file_of_the_kernels_own_account_is_read(tmp_path):
    record = json.dumps({"pid": 7, "at": 1.5, "error": "cuda_oom", "message": "CUDA out of memory"})
    mine = tmp_path / "mine.jsonl"
    mine.write_text(record + "\n")
    assert read_gpu_errors(str(mine), os.getuid()) == [GpuError(7, 1.5, "cuda_oom", record[-20:-2])]
    assert read_gpu_errors(str(mine), os.getuid() + 1) == []  # a classmate's account
    link = tmp_path / "link.jsonl"
    link.symlink_to(mine)
    assert read_gpu_errors(str(link), os.getuid()) == []  # never through a link
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    assert read_gpu_errors(str(fifo), os.getuid()) == []  # and without blocking on a FIFO
    assert read_gpu_errors(str(tmp_path / "missing.jsonl"), os.getuid()) == []
    if os.geteuid() == 0:
        os.chown(mine, 4242, 4242)
        assert read_gpu_errors(str(mine), os.getuid()) == []
        assert len(read_gpu_errors(str(mine), 4242)) == 1


def test_a_large_file_is_read_from_its_end_and_bounded(tmp_path):
    path = tmp_path / "big.jsonl"
    lines = [
        json.dumps({"pid": i, "at": i, "error": "cuda_oom", "message": "m" * 1000})
        for i in range(200)
    ]
    path.write_text("\n".join(lines) + "\n")
    found = read_gpu_errors(str(path), os.getuid())
    assert 0 < len(found) <= MAX_RECORDS and found[-1].pid == 199
    assert all(len(error.message) <= 200 for error in found)


def test_malformed_records_are_skipped():
    lines = [
        b"not json",
        b"[1, 2]",
        b'{"pid": "7", "at": 1, "error": "cuda_oom"}',
        b'{"pid": true, "at": 1, "error": "cuda_oom"}',
        b'{"pid": 7, "at": NaN, "error": "cuda_oom"}',
        b'{"pid": 7, "at": 1, "error": "other"}',
        b'{"pid": 7, "at": 1, "error": "cuda_oom", "message": 5}',
        b'{"pid": 7, "at": 2, "error": "cuda_oom", "message": "one\\nline\\u0000 only"}',
    ]
    assert parse_records(lines) == [GpuError(7, 2.0, "cuda_oom", "one line only")]
