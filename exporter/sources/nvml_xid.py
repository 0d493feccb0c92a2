"""Counts XID error events from an NVML event set, watched in a background thread.

XIDs are the driver's error reports (e.g. 79: GPU fell off the bus, 48: double-bit ECC,
31: memory page fault, often a student's buggy kernel). NVML delivers them as events, not
as a value to poll, so a thread waits on the event set and counts them. The GPUs are
listed once at (re)initialisation, to register them; a GPU's UUID for an event comes from
the event's device, or for a GPU already lost, from the NVML source's own record
(``known_uuid``). The latest events are kept with their time too (``recent``): an XID on a
kernel's GPU shortly before it died says why (``sources.deaths``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import pynvml

from ..model import XidEvent
from .nvml import NvmlSession, text

log = logging.getLogger(__name__)

WAIT_MS = 500
RECENT_EVENTS = 64  # a GPU in trouble reports a few; a flood keeps the newest


class XidWatcher:
    def __init__(self, session: NvmlSession, known_uuid: Callable[[int], str | None]) -> None:
        self.session = session
        self.known_uuid = known_uuid  # GPU index -> its UUID when last read
        self._counts: dict[tuple[str, int], int] = {}
        self._recent: deque[XidEvent] = deque(maxlen=RECENT_EVENTS)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        session.on_init(self.start)
        session.on_reset(self.stop)

    def counts(self) -> dict[tuple[str, int], int]:
        """(GPU uuid, xid) -> events seen since the exporter started."""
        with self._lock:
            return dict(self._counts)

    def recent(self) -> tuple[XidEvent, ...]:
        """The latest events, oldest first."""
        with self._lock:
            return tuple(self._recent)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        try:
            event_set = self._register()
        except pynvml.NVMLError as exc:
            log.info("XID events unavailable, dlcourse_gpu_xid_errors_total stays empty: %s", exc)
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(event_set,), name="nvml-xid", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * WAIT_MS / 1000)
        self._thread = None

    def _register(self) -> object:
        event_set = pynvml.nvmlEventSetCreate()
        registered = 0
        for index in range(pynvml.nvmlDeviceGetCount()):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                supported = pynvml.nvmlDeviceGetSupportedEventTypes(handle)
                if supported & pynvml.nvmlEventTypeXidCriticalError:
                    pynvml.nvmlDeviceRegisterEvents(
                        handle, pynvml.nvmlEventTypeXidCriticalError, event_set
                    )
                    registered += 1
            except pynvml.NVMLError as exc:  # one GPU without events must not stop the rest
                log.info("GPU %d: XID events not watched: %s", index, exc)
        if not registered:
            pynvml.nvmlEventSetFree(event_set)
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return event_set

    def _run(self, event_set: object) -> None:
        try:
            while not self._stop.is_set():
                try:
                    event = pynvml.nvmlEventSetWait_v2(event_set, WAIT_MS)
                except pynvml.NVMLError_Timeout:
                    continue
                except pynvml.NVMLError_GpuIsLost:
                    # One GPU is gone (the gpu collector reports it); keep watching the rest.
                    self._stop.wait(WAIT_MS / 1000)
                    continue
                except pynvml.NVMLError as exc:
                    # The session's next poll notices a broken driver and restarts us.
                    log.warning("XID event wait failed, watcher stops: %s", exc)
                    return
                if event.eventType & pynvml.nvmlEventTypeXidCriticalError:
                    self._record(event)
        finally:
            with contextlib.suppress(pynvml.NVMLError):  # NVML may already be shut down
                pynvml.nvmlEventSetFree(event_set)

    def _record(self, event: object) -> None:
        key = (self._uuid(event.device), int(event.eventData))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            self._recent.append(XidEvent(key[0], key[1], time.time()))
        log.warning("GPU %s reported XID %d", key[0], key[1])

    def _uuid(self, device: object) -> str:
        """The GPU's UUID; for a GPU already lost (XID 79), the one it had when last read."""
        try:
            return text(pynvml.nvmlDeviceGetUUID(device))
        except pynvml.NVMLError:
            try:
                return self.known_uuid(pynvml.nvmlDeviceGetIndex(device)) or "unknown"
            except pynvml.NVMLError:
                return "unknown"
