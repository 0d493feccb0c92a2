"""An IPython extension every kernel of the students' environment loads: it notes the
kernel's own CUDA out-of-memory errors where the exporter can find them, so that a student
whose kernel then dies is told why (issue 23; the reader is
exporter/sources/kernel_errors.py).

Not part of the installer's process: the installer copies this file's text into the users'
environment (``sys.prefix/etc/ipython/dlcourse_kernel_gpu_errors.py``) beside an
``ipython_kernel_config.py`` that loads it (templates.kernel_config). It runs inside
students' kernels, so: standard library only (ipykernel, which runs it, aside), nothing
that can break a kernel (every failure is swallowed), and nothing is written unless a cell
raised a CUDA out-of-memory error.

The hooks, as IPython 9.x and ipykernel 7.x define them:
- IPython's ``post_run_cell`` event (IPython/core/events.py) fires after every cell that is
  not silent, with the cell's ``ExecutionResult``, whose ``error_in_exec`` is the exception
  the cell raised (IPython/core/interactiveshell.py);
- ``ipykernel.connect.get_connection_file()`` is the running kernel's connection file
  (ipykernel/connect.py); jupyter_server names it ``kernel-<id>.json``.

What counts as a CUDA out-of-memory error, by the text its library raises:
- PyTorch's ``torch.OutOfMemoryError``: "CUDA out of memory. Tried to allocate ..."
  (pytorch/pytorch c10/cuda/CUDACachingAllocator.cpp);
- TensorFlow's ``ResourceExhaustedError``: "OOM when allocating tensor with shape ..."
  (tensorflow/tensorflow tensorflow/core/framework/op_kernel.cc);
- the CUDA driver's own name for it, ``CUDA_ERROR_OUT_OF_MEMORY`` (CuPy, Numba, JAX).

Each is one JSON line in ``kernel-<id>-gpu-errors.jsonl`` beside the connection file
(``{"pid", "at", "error": "cuda_oom", "message"}``), which the kernel removes when it exits
normally: only a kernel that died leaves one behind.
"""

import atexit
import contextlib
import json
import os
import time

SUFFIX = "-gpu-errors.jsonl"  # the exporter reads the same name
MAX_FILE_BYTES = 64 * 1024  # a kernel that keeps failing does not fill the disk
MAX_MESSAGE_CHARS = 500
MAX_CHAIN = 5  # how far __cause__ / __context__ are followed
CUDA_OOM_TEXTS = ("CUDA out of memory", "CUDA_ERROR_OUT_OF_MEMORY")


def cuda_oom_message(error):
    """The message of a CUDA out-of-memory error in error's chain, else None."""
    for _ in range(MAX_CHAIN):
        if error is None:
            return None
        message = str(error)
        tensorflow_oom = type(error).__name__ == "ResourceExhaustedError" and "OOM" in message
        if tensorflow_oom or any(text in message for text in CUDA_OOM_TEXTS):
            return message.strip().splitlines()[0][:MAX_MESSAGE_CHARS] if message.strip() else ""
        error = error.__cause__ or error.__context__
    return None


def errors_path(connection_file):
    if not connection_file or not connection_file.endswith(".json"):
        return None
    return os.path.abspath(connection_file)[: -len(".json")] + SUFFIX


class GpuErrorNotes:
    """Appends a record for each CUDA out-of-memory error a cell raises."""

    def __init__(self, path):
        self.path = path
        self.wrote = False

    def post_run_cell(self, result):
        try:
            message = cuda_oom_message(getattr(result, "error_in_exec", None))
            if message is not None:
                self.note(message)
        except Exception:  # never disturb the student's kernel
            pass

    def note(self, message):
        record = {"pid": os.getpid(), "at": time.time(), "error": "cuda_oom", "message": message}
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o600)
        try:
            if os.fstat(fd).st_size < MAX_FILE_BYTES:
                os.write(fd, (json.dumps(record) + "\n").encode())
        finally:
            os.close(fd)
        if not self.wrote:
            self.wrote = True
            atexit.register(self.remove)

    def remove(self):
        """At a normal exit: the notes are only needed about a kernel that died."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def load_ipython_extension(ipython):
    try:
        from ipykernel.connect import get_connection_file

        path = errors_path(get_connection_file())
    except Exception:  # not in a kernel (a terminal IPython): nothing to do
        return
    if path is not None:
        ipython.events.register("post_run_cell", GpuErrorNotes(path).post_run_cell)
