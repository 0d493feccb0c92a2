"""A live course for the students' side: a real hub with the installer's staff and students
snippets (the class-status page, each student's page ``my-gpu``, the GPU idle culler when
TLJH's config.yaml turns it on), and a real exporter over stand-in GPUs.

    course = StudentCourse(workdir, user_env, nvml_dir, idle={"gpu_idle_cull": True, ...})
    ada = course.hub.add_user(); course.hub.start_server(ada)
    kernel = course.hub.start_kernel(ada)
    course.gpus([Process(course.hub.kernel_pid(ada, kernel), 2 * GIB, 0)])
    with course.hub.login(ada) as browser: browser.get(course.page + "api/me")
    course.close()

The hub loads the snippets exactly as `dlcourse-install render` writes them (relocated under
the work folder), so TLJH's config.yaml is a file of the work folder too: ``idle`` is its
``dlcourse`` section, and ``http.port`` the hub's public port, where the culler reaches the
students' servers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.rendered.students import STUDENT_SERVICE
from fakenvml import Gpu, Process, Scenario, XidEvent

from .alerting import AlertingStack
from .browser import Browser
from .exporter import RunningExporter, Samples, free_port, parse_samples
from .hub import LiveHub
from .rendered import render_site

GIB = 1024**3
PAGE = f"/services/{STUDENT_SERVICE}/"


class StudentCourse:
    def __init__(
        self,
        workdir: Path,
        user_env: Path,
        nvml_dir: Path,
        *,
        idle: Mapping[str, Any] | None = None,
        exporter_args: Sequence[str] = (),
        prometheus: bool = False,
    ) -> None:
        """prometheus: also the real Prometheus the students' page reads GPU-hours from."""
        self.dir = workdir
        self.hub = LiveHub(workdir / "hub", user_env)
        self.stack: AlertingStack | None = None
        ports = {
            "exporter": free_port(),
            "status": free_port(),
            "student": free_port(),
            "prometheus": free_port(),
            "hub": self.hub.hub_port,
        }
        self.site = render_site(workdir / "site", "--admin", "teacher", relocate=True, ports=ports)
        paths = Paths().under(str(self.site.root))
        config = {"http": {"port": self.hub.public_port}, "dlcourse": dict(idle or {})}
        # JSON is YAML: the hub's snippet reads it with PyYAML, as it reads TLJH's file.
        Path(paths.tljh_config_yaml).parent.mkdir(parents=True, exist_ok=True)
        Path(paths.tljh_config_yaml).write_text(json.dumps(config))
        self.token = self.site.local("/etc/dlcourse/exporter-token")
        self.culler_token = self.site.local("/etc/dlcourse/exporter-culler-token")
        self.scenario = workdir / "gpus.scn"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._processes: list[list[Process]] = [[], []]
        self._utilization = [0, 0]
        self._xid_events: list[list[XidEvent]] = [[], []]
        self._write()
        threading.Thread(target=self._driver, daemon=True).start()
        self.exporter = RunningExporter(
            [
                f"--web.token-file={self.token}",
                f"--web.culler-token-file={self.culler_token}",
                f"--hub.url={self.hub.api_url}",
                f"--hub.token-file={self.hub.token_file()}",
                "--hub.interval=1",
                "--collection.interval=0.5",
                *self.hub.attribution_args(),
                *exporter_args,
            ],
            nvml_dir=nvml_dir,
            scenario=self.scenario,
            log_path=workdir / "exporter.log",
            port=ports["exporter"],
        )
        # The JupyterLab extension as the installer writes it into the users' environment,
        # copied where every account can read it (the work folder is root's alone).
        self.jupyter_path = Path(tempfile.mkdtemp(prefix="dlcourse-jupyter-path-"))
        shutil.copytree(
            paths.labextension, self.jupyter_path / "labextensions" / "@dlcourse" / "jupyterlab-gpu"
        )
        subprocess.run(["chmod", "-R", "a+rX", str(self.jupyter_path)], check=True)
        self.hub.add_config(
            f"c.Spawner.environment = {{'JUPYTER_PATH': {str(self.jupyter_path)!r}}}"
        )
        try:
            if prometheus:
                password = self.site.read(f"/etc/dlcourse/monitoring/{STUDENT_SERVICE}.password")
                self.stack = AlertingStack(
                    workdir / "stack", {"dlcourse": [self.exporter.url.removeprefix("http://")]},
                    exporter_token_file=self.token, readers={STUDENT_SERVICE: password.strip()},
                    prometheus_port=ports["prometheus"],
                ).__enter__()  # fmt: skip
            for snippet in ("dlcourse-staff.py", "dlcourse-students.py"):
                self.hub.add_config(
                    self.site.read(f"/opt/tljh/config/jupyterhub_config.d/{snippet}")
                )
            self.hub.start()
            self.hub.wait_for_service(STUDENT_SERVICE)
        except BaseException:
            self.close()
            raise

    def gpus(self, processes: Sequence[Process], utilization: int = 0, gpu: int = 0) -> None:
        """What runs on one of the two 40 GiB stand-in GPUs (fakenvml re-reads the file). As
        the real driver does, a process that exits lets go of its memory (``_driver``)."""
        with self._lock:
            self._processes[gpu], self._utilization[gpu] = list(processes), utilization
            self._write()

    def add_process(self, process: Process, gpu: int = 0) -> None:
        with self._lock:
            self._processes[gpu].append(process)
            self._write()

    def xid(self, gpu: int, code: int = 31) -> None:
        """An XID event on that GPU (31: a GPU memory page fault, a faulty CUDA kernel)."""
        with self._lock:
            self._xid_events[gpu].append(XidEvent(sum(map(len, self._xid_events)) + 1, code))
            self._write()

    def _write(self) -> None:
        gpus = [
            Gpu(memory_total=40 * GIB, memory_used=sum(p.used_memory or 0 for p in procs),
                utilization_gpu=util, processes=procs, xid_events=events)
            for procs, util, events in zip(self._processes, self._utilization,
                                           self._xid_events, strict=True)
        ]  # fmt: skip
        Scenario(gpus=gpus).write(self.scenario)

    def _driver(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                alive = [[p for p in g if running(p.pid)] for g in self._processes]
                if alive != self._processes:
                    self._processes = alive
                    self._write()

    def browse_as(self, browser: Browser, name: str, path: str) -> None:
        """Logs `name` in through the hub's login form, as a person would, and lands on path."""
        browser.open(f"{self.hub.public_url}/hub/login?next={quote(path)}")
        browser.wait_for("document.querySelector('#username_input') !== null")
        browser.evaluate(
            f"document.querySelector('#username_input').value = {name!r};"
            "document.querySelector('#password_input').value = 'any password';"
            "document.querySelector('#login_submit').click(); true"
        )

    def scrape(self) -> Samples:
        """/metrics with the rendered token, as Prometheus reads it."""
        token = self.token.read_text().strip()
        return parse_samples(self.exporter.scrape_text({"Authorization": f"Bearer {token}"}))

    def student_api(self, browser: httpx.Client) -> httpx.Response:
        """The page's API as the page's own script calls it: with the page's XSRF token."""
        page = browser.get(PAGE, follow_redirects=True)
        if page.status_code != 200:
            return page
        xsrf = page.text.split('<meta name="xsrf" content="', 1)[1].split('"', 1)[0]
        return browser.get(PAGE + "api/me", headers={"X-XSRFToken": xsrf,
                                                     "Sec-Fetch-Mode": "cors"})  # fmt: skip

    def wait_page(
        self, browser: httpx.Client, done: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        """Reads the student's page API until done(answer) is true; returns that answer."""
        deadline = time.monotonic() + timeout
        answer: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = self.student_api(browser)
            assert response.status_code == 200, (response.status_code, response.text[:300])
            answer = response.json()
            if done(answer):
                return answer
            time.sleep(0.5)
        # What the stand-in GPUs list and what the exporter said, for a failure seen once in
        # a full run and never alone (docs/students.md, "Known").
        with self._lock:
            listed = [[(p.pid, running(p.pid)) for p in g] for g in self._processes]
        raise AssertionError(
            f"the page never showed it; last: {json.dumps(answer)[:2000]}\n"
            f"GPU processes (pid, running): {listed}\nexporter log:\n{self.exporter.log_tail(20)}"
        )

    def close(self) -> None:
        self._stop.set()
        if self.stack is not None:
            self.stack.close()
        self.exporter.stop()
        self.hub.close()
        shutil.rmtree(self.jupyter_path, ignore_errors=True)


def running(pid: int) -> bool:
    """Neither gone nor a zombie: a process's GPU memory is freed when it exits, whether or not
    its parent has reaped it yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def connection_file(pid: int) -> str:
    """The connection file a kernel process was started with (``-f FILE``, ipykernel)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    for i, arg in enumerate(argv):
        if arg == "-f" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--f="):
            return arg.removeprefix("--f=")
    raise ValueError(f"process {pid} names no connection file: {argv}")


class KernelCells:
    """Runs code in a student's live kernel as a notebook cell would, through the kernel's
    own connection file (root may read it): ``dlcourse_testing.kernel_deaths.Run``."""

    def __init__(self, pid: int) -> None:
        from jupyter_client import BlockingKernelClient

        self.pid = pid
        self.client = BlockingKernelClient()
        self.client.load_connection_file(connection_file(pid))
        self.client.start_channels()

    def __call__(self, code: str, wait: bool) -> None:
        """Runs the cell; with ``wait``, returns once it finished; without, once the kernel
        started it (a cell sent just after a failed one may be aborted unrun: ipykernel
        drops what arrives while it is "aborting" after an error; then it is sent again)."""
        deadline = time.monotonic() + 60
        while True:
            msg_id = self.client.execute(code)
            reply = self._reply(msg_id, deadline, started=not wait)
            if reply != "aborted":
                return

    def _reply(self, msg_id: str, deadline: float, started: bool) -> str:
        """The cell's reply status, or "started" once the kernel runs it (when `started`; a
        kernel that dies of the cell may never say so)."""
        import queue

        while time.monotonic() < deadline:
            if started and not running(self.pid):
                return "started"
            if started:
                try:
                    message = self.client.get_iopub_msg(timeout=0.1)
                    if (message["parent_header"].get("msg_id") == msg_id
                            and message["msg_type"] == "execute_input"):  # fmt: skip
                        return "started"
                except queue.Empty:
                    pass
            try:
                reply = self.client.get_shell_msg(timeout=0.1)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"].get("status", "")
        raise TimeoutError(f"the kernel did not take the cell {msg_id}")

    def close(self) -> None:
        self.client.stop_channels()
