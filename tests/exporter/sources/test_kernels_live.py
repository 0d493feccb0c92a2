"""Real kernels of a real Linux account, watched by the real exporter (root only).

Four ipykernel kernels run as a fresh account under a jupyter_client driver (the way a
Jupyter server runs them): one is killed with SIGSEGV, one with SIGKILL, one is shut down
with a shutdown_request and one is restarted. Only the first two are crashes.
"""

from __future__ import annotations

import os
import signal

import pytest

from dlcourse_exporter.sources.kernels import GRACE_SECONDS
from dlcourse_testing.exporter_run import (
    running_exporter,
    samples,
    value,
    wait_for,
    wait_poll_after,
)
from dlcourse_testing.kernels import KernelDriver

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real accounts")

COLLECTORS = ("--no-collector.gpu", "--no-collector.processes", "--collector.kernels")


@pytest.mark.parametrize("exit_events", ["auto", "poll"])
def test_crashes_counted_by_signal_and_shutdowns_not(
    exit_events, make_linux_user, user_env, tmp_path
):
    account = make_linux_user()
    hub_user = f"hub-{account.pw_name}"  # JUPYTERHUB_USER names the hub user, not the account
    driver = KernelDriver(account, user_env, hub_user)
    args = (*COLLECTORS, "--collection.interval=0.5", f"--kernels.exit-events={exit_events}")
    # The account runs servers for other hub users, as a spawner's shared account does: only
    # then does the exporter believe JUPYTERHUB_USER (sources/owners.py).
    args += (f"--user.spawner-account={account.pw_name}",)
    try:
        with running_exporter(*args) as url:
            kernels = [driver.ask("start") for _ in range(4)]
            wait_for(
                lambda: value(url, "dlcourse_user_kernels", user=hub_user) == 4,
                60,
                "the exporter did not see 4 kernels",
            )
            expected_source = "netlink" if exit_events == "auto" else "poll"
            assert value(url, "dlcourse_kernel_exit_events_info", source=expected_source) == 1
            for reason in ("SIGKILL", "SIGSEGV", "SIGABRT", "SIGBUS", "SIGTERM", "exit"):
                crashes = value(
                    url, "dlcourse_user_kernel_crashes_total", user=hub_user, signal=reason
                )
                assert crashes == 0

            os.kill(kernels[0]["pid"], signal.SIGSEGV)
            os.kill(kernels[1]["pid"], signal.SIGKILL)
            driver.ask(f"shutdown {kernels[2]['id']}")
            restarted = driver.ask(f"restart {kernels[3]['id']}")
            assert restarted["pid"] != kernels[3]["pid"]

            def crashes_and_running():
                found = samples(url)
                crashes = {
                    dict(labels)["signal"]: v
                    for (name, labels), v in found.items()
                    if name == "dlcourse_user_kernel_crashes_total"
                    and dict(labels)["user"] == hub_user
                }
                running = found.get(("dlcourse_user_kernels", (("user", hub_user),)))
                return crashes, running

            def counted():
                crashes, running = crashes_and_running()
                return crashes["SIGSEGV"] and crashes["SIGKILL"] and running == 1

            wait_for(
                counted,
                60,
                lambda: f"the crashes and the restarted kernel: {crashes_and_running()}",
            )
            # Every exit was seen by then; a poll that begins a grace period later has judged
            # them all: the clean shutdown and the restart must still not count.
            wait_poll_after(url, "kernels", GRACE_SECONDS)
            crashes, running = crashes_and_running()
            assert crashes == {
                "SIGKILL": 1,
                "SIGSEGV": 1,
                "SIGABRT": 0,
                "SIGBUS": 0,
                "SIGTERM": 0,
                "exit": 0,
            }
            assert running == 1  # the restarted kernel
            unknown = value(url, "dlcourse_user_kernel_exits_unknown_total", user=hub_user)
            if exit_events == "auto":
                assert unknown == 0
            else:
                # Polling may miss the restarted kernel's exit status (its parent reaps it
                # at once) and cannot tell a restart from a crash restarted by jupyter_client:
                # that exit is "unknown", never a crash.
                assert unknown in (0, 1)
    finally:
        driver.close()
