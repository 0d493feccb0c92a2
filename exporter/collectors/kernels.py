"""The ``kernels`` collector: running notebook kernels and kernel crashes per user.

Kernels are found on the host in the process table, with no hub access (the ``kernels``
source: ``sources.kernels`` says what is a kernel and what counts as a crash). Sample
output::

    dlcourse_user_kernels{user="alice"} 2
    dlcourse_user_kernel_crashes_total{signal="SIGKILL",user="alice"} 1
    dlcourse_user_kernel_crashes_total{signal="SIGSEGV",user="alice"} 0
    dlcourse_user_kernel_crashes_total{signal="exit",user="alice"} 0
    dlcourse_user_kernel_exits_unknown_total{user="alice"} 0
    dlcourse_kernel_exit_events_info{source="netlink"} 1

A user seen with a kernel keeps their series (zeros included) while they count as a
student (``roster.keep_user``: a hub user, or without a hub for an hour after their last
kernel), so counters stay monotonic when their kernels are gone.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric

from ..metricdefs import counter, gauge
from ..model import KernelsSnapshot
from ..options import Option, one_of
from .base import Collector

KERNELS = gauge("dlcourse_user_kernels", "Running notebook kernel processes of the user.", "user")
CRASHES = counter(
    "dlcourse_user_kernel_crashes",
    "Kernels of the user that died unexpectedly since the exporter started, by the signal "
    'that killed them ("exit": a non-zero exit code). Clean shutdowns and restarts are not '
    "counted.",
    "user",
    "signal",
)
UNKNOWN_EXITS = counter(
    "dlcourse_user_kernel_exits_unknown",
    "Kernels of the user that ended without the exporter seeing how (polling fallback only: "
    "a crash and a restart cannot be told apart there).",
    "user",
)
EXIT_EVENTS = gauge(
    "dlcourse_kernel_exit_events_info",
    'How kernel exits are observed: "netlink" (proc connector, exact) or "poll" (fallback).',
    "source",
)
METRICS = (KERNELS, CRASHES, UNKNOWN_EXITS, EXIT_EVENTS)
# Always emitted for each known user, so dashboards and alerts see zeros.
COMMON_REASONS = ("SIGKILL", "SIGSEGV", "SIGABRT", "SIGBUS", "SIGTERM", "exit")


class KernelsCollector(Collector):
    name = "kernels"
    description = "notebook kernels and kernel crashes per user, from /proc and process-exit events"
    sources = ("kernels",)
    metrics = METRICS
    options = (
        Option(
            "kernels.exit-events",
            "how kernel exits are seen: auto (netlink proc connector, else polling) or poll",
            "auto",
            one_of("auto", "poll"),
        ),
    )

    def render(self, snapshot: KernelsSnapshot | None) -> Iterator[Metric]:
        if snapshot is None:
            return
        kernels, crashes, unknown, source = (m.family() for m in METRICS)
        reasons = sorted(set(COMMON_REASONS) | {reason for _, reason in snapshot.crashes})
        for user in sorted(snapshot.users):
            kernels.add_metric([user], snapshot.running.get(user, 0))
            unknown.add_metric([user], snapshot.unknown_exits.get(user, 0))
            for reason in reasons:
                crashes.add_metric([user, reason], snapshot.crashes.get((user, reason), 0))
        source.add_metric([snapshot.exit_events], 1)
        yield from (kernels, crashes, unknown, source)
