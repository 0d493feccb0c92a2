"""Benchmark: the exporter over 8 stand-in GPUs with 200 processes of 100 students.

Reports the CPU time of one collection cycle (gpu + processes collectors, in process),
/metrics latency p50/p99 over N scrapes with 4 concurrent clients, and resident memory;
then scrapes Debian's prometheus-node-exporter the same way and prints the p99 ratio.
Run with `make bench`; results go in docs/performance.md with the machine described.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from exporter_process import AUTH, RunningExporter, free_port  # noqa: E402

from fakenvml import build_library, example_scenario, preload  # noqa: E402

GPUS, PROCESSES, USERS = 8, 200, 100


def write_procfs(root: Path, scenario) -> None:
    """A /proc fixture tree: each fake GPU pid belongs to a TLJH-style unit of its student."""
    for gpu in scenario.gpus:
        for process in gpu.processes:
            student = (process.pid - 5_000_000) % USERS
            d = root / str(process.pid)
            d.mkdir(parents=True)
            (d / "cgroup").write_text(f"0::/system.slice/jupyter-student{student:03d}.service\n")
            (d / "environ").write_bytes(f"JUPYTERHUB_USER=student{student:03d}\0".encode())
            (d / "status").write_text("Name:\tpython\nUid:\t0\t0\t0\t0\n")
    (root / "uptime").write_text("86400.00 170000.00\n")  # the kernels collector reads it


def cycle_cpu_seconds(lib_dir: Path, procfs: Path, cycles: int) -> list[float]:
    preload(lib_dir)
    from dlcourse_exporter.collectors.gpu import GpuCollector
    from dlcourse_exporter.collectors.processes import ProcessesCollector
    from dlcourse_exporter.sources.nvml import NvmlSession
    from dlcourse_exporter.sources.owners import OwnerResolver

    session = NvmlSession()
    collectors = [GpuCollector(session), ProcessesCollector(session, OwnerResolver(procfs))]
    for collector in collectors:
        collector.poll()  # warm up: NVML init, imports
    times = []
    for _ in range(cycles):
        started = time.process_time()
        for collector in collectors:
            collector.poll()
        times.append(time.process_time() - started)
    session.close()
    return times


def scrape_latencies(
    url: str, scrapes: int, clients: int, headers: dict[str, str] | None = None
) -> list[float]:
    def one(client: httpx.Client) -> float:
        started = time.perf_counter()
        response = client.get(url)
        response.raise_for_status()
        return time.perf_counter() - started

    with httpx.Client(timeout=10, headers=headers) as warm:
        for _ in range(10):
            warm.get(url)
    with ThreadPoolExecutor(clients) as pool:
        client_list = [httpx.Client(timeout=10, headers=headers) for _ in range(clients)]
        results = list(pool.map(lambda i: one(client_list[i % clients]), range(scrapes)))
        for client in client_list:
            client.close()
    return results


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def describe_machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.platform()}, Python {platform.python_version()}"
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {system}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--cycles", type=int, default=50)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dlcourse-bench-"))
    lib_dir = build_library(work / "nvml")
    scenario = example_scenario(GPUS, PROCESSES, USERS)
    scenario_path = scenario.write(work / "gpus.scn")
    procfs = work / "proc"
    write_procfs(procfs, scenario)
    os.environ["FAKENVML_SCENARIO"] = str(scenario_path)

    print(f"machine: {describe_machine()}")
    print(f"scenario: {GPUS} GPUs, {PROCESSES} GPU processes of {USERS} students")
    cycles = cycle_cpu_seconds(lib_dir, procfs, args.cycles)
    print(
        f"collection cycle CPU time: median {statistics.median(cycles) * 1000:.1f} ms, "
        f"max {max(cycles) * 1000:.1f} ms (target <= 20 ms)"
    )

    exporter = RunningExporter(
        ["--collection.interval=5", f"--path.procfs={procfs}"],
        nvml_dir=lib_dir,
        scenario=scenario_path,
    )
    try:
        lat = scrape_latencies(f"{exporter.url}/metrics", args.scrapes, args.clients, AUTH)
        rss = rss_mib(exporter.process.pid)
        size = len(exporter.scrape_text())
    finally:
        exporter.stop()
    p50, p99 = percentile(lat, 50) * 1000, percentile(lat, 99) * 1000
    print(
        f"dlcourse-exporter /metrics ({size} bytes): p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"RSS {rss:.1f} MiB (target <= 60 MiB)"
    )

    node = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if node is None:
        print("prometheus-node-exporter not installed: no comparison")
        return 0
    port = free_port()
    process = subprocess.Popen(
        [node, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        node_lat = scrape_latencies(url, args.scrapes, args.clients)
    finally:
        process.terminate()
        process.wait()
    n50, n99 = percentile(node_lat, 50) * 1000, percentile(node_lat, 99) * 1000
    print(f"node_exporter /metrics: p50 {n50:.2f} ms, p99 {n99:.2f} ms")
    print(f"p99 ratio dlcourse/node_exporter: {p99 / n99:.2f} (target <= 1.0)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
