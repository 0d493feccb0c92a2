"""NVML session: initialisation, retry with backoff, and recovery after driver trouble.

The only place besides the other ``sources.nvml_*`` modules that touches ``pynvml``. A
missing or broken driver never raises out of the exporter: ``ensure()`` raises
``NvmlUnavailable`` and the NVML source fails (its collectors report success 0) until a
retry succeeds. ``sources.nvml_source`` owns the one session and its life cycle.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import pynvml

from ..backoff import Backoff
from ..untrusted import valid_text

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors after which NVML itself is unusable (driver unloaded or upgraded under us): shut
# down and initialise again on the next cycle instead of failing forever.
SESSION_ERRORS = (
    pynvml.NVMLError_Uninitialized,
    pynvml.NVMLError_DriverNotLoaded,
    pynvml.NVMLError_LibRmVersionMismatch,
    pynvml.NVMLError_LibraryNotFound,
)

# A field a GPU or driver does not offer is left out; that is not a failure.
ABSENT_FIELD_ERRORS = (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound)


class NvmlUnavailable(Exception):
    """NVML cannot be used right now (no driver, wrong driver, library missing)."""


def text(value: str | bytes) -> str:
    """pynvml returns str on recent versions and bytes on old ones; either way valid UTF-8."""
    return valid_text(value.decode(errors="replace") if isinstance(value, bytes) else value)


def short_name(function: Callable[..., Any]) -> str:
    """The ``call`` label of an NVML function: nvmlDeviceGetTemperature -> GetTemperature."""
    return re.sub(r"^nvml(Device)?|_v\d+$", "", getattr(function, "__name__", "unknown"))


# (gpu index, uuid, call) -> NVML calls for that GPU that failed since the exporter started
ErrorCounts = dict[tuple[int, str, str], int]


class NvmlSession:
    """NVML initialised once, re-initialised after driver trouble; thread-safe."""

    def __init__(
        self,
        min_backoff: float = 1.0,
        max_backoff: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._initialized = False
        self._backoff = Backoff(min_backoff, max_backoff, clock)
        self._last_error = ""
        self._on_init: list[Callable[[], None]] = []
        self._on_reset: list[Callable[[], None]] = []
        self._errors: Counter[tuple[int, str, str]] = Counter()
        self._errors_lock = threading.Lock()

    def on_init(self, callback: Callable[[], None]) -> None:
        """Run callback after every successful (re)initialisation."""
        self._on_init.append(callback)

    def on_reset(self, callback: Callable[[], None]) -> None:
        """Run callback before NVML is shut down."""
        self._on_reset.append(callback)

    def ensure(self) -> None:
        """Initialise NVML if needed, or raise NvmlUnavailable while backing off."""
        with self._lock:
            if self._initialized:
                return
            if not self._backoff.ready():
                # Same text every time: the scheduler logs only when the error changes.
                raise NvmlUnavailable(self._last_error)
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as exc:
                self._last_error = f"NVML initialisation failed: {exc}"
                self._backoff.failed()
                raise NvmlUnavailable(self._last_error) from exc
            self._initialized = True
            self._backoff.succeeded()
            log.info("NVML initialised, driver %s", text(pynvml.nvmlSystemGetDriverVersion()))
        for callback in self._on_init:
            callback()

    def reset(self, reason: str) -> None:
        """Shut NVML down after a session-level error; the next ensure() starts over."""
        log.warning("NVML reset: %s", reason)
        self._shutdown()

    def _shutdown(self) -> None:
        for callback in self._on_reset:
            callback()
        with self._lock:
            if not self._initialized:
                return
            self._initialized = False
            # The driver may already be gone; then there is nothing left to release.
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Call an NVML function; a session-level error resets the session and re-raises."""
        try:
            return function(*args)
        except SESSION_ERRORS as exc:
            self.reset(f"{function.__name__}: {exc}")
            raise NvmlUnavailable(str(exc)) from exc

    def gpu_call(
        self,
        index: int,
        uuid: str,
        function: Callable[..., T],
        *args: Any,
        call: str = "",
        expected: tuple[type[Exception], ...] = (),
    ) -> T:
        """call() for one GPU: an error other than NotSupported, a lost GPU, a session-level
        error or one the caller expects is counted under (index, uuid, call), then re-raised
        for the caller to leave that GPU's field or series out."""
        try:
            return self.call(function, *args)
        except (*ABSENT_FIELD_ERRORS, pynvml.NVMLError_GpuIsLost, *expected):
            raise
        except pynvml.NVMLError as exc:
            name = call or short_name(function)
            with self._errors_lock:
                self._errors[(index, uuid, name)] += 1
            log.debug("GPU %d %s failed: %s", index, name, exc)
            raise

    def gpu_optional(
        self, index: int, uuid: str, function: Callable[..., T], *args: Any
    ) -> T | None:
        """A field of one GPU, or None where it is not supported or its call failed."""
        try:
            return self.gpu_call(index, uuid, function, *args)
        except pynvml.NVMLError_GpuIsLost:
            raise
        except pynvml.NVMLError:
            return None

    def error_counts(self) -> ErrorCounts:
        with self._errors_lock:
            return dict(self._errors)

    def close(self) -> None:
        self._shutdown()
