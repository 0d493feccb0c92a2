"""`dlcourse-install render`: every file of an install, with its mode and owner, under a folder."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request

import pytest

from dlcourse_installer.checklist import runner
from dlcourse_installer.layout.paths import Paths
from dlcourse_testing.alerting import Process, request, wait_until
from dlcourse_testing.exporter import free_port
from dlcourse_testing.rendered import render_site

from .conftest import install
from .fakehost import FakeHost

pytestmark = pytest.mark.live  # every test here starts a process

SECRET = re.compile(r"^[0-9a-f]{64}\n$")
# Inside files made from secrets (a netrc, web-config hashes): what differs from run to run.
SECRET_VALUES = re.compile(r"[0-9a-f]{64}|\$2b\$\d\d\$[./A-Za-z0-9]{53}")


def _roster(tmp_path):
    path = tmp_path / "students.csv"
    path.write_text("username,section\nada,A\ngrace,A\nalan,B 2\n")
    return path


def _files_under(root) -> set[str]:
    found = set()
    for dirpath, _, names in os.walk(root):
        found |= {"/" + os.path.relpath(os.path.join(dirpath, n), root) for n in names}
    return found - {"/OWNERS"}


def test_owners_lists_every_file_with_the_mode_it_has(tmp_path):
    args = ["--admin", "teacher", "--roster", str(_roster(tmp_path)), "--reboot"]
    site = render_site(tmp_path / "site", *args)
    assert set(site.owners) == _files_under(site.root)
    for path, (_, _, mode) in site.owners.items():
        assert os.stat(site.local(path)).st_mode & 0o7777 == mode, path
    assert site.owners["/etc/dlcourse/hub-token"] == ("root", "root", 0o600)
    assert site.owners["/etc/dlcourse/prometheus-hub-token"] == ("root", "prometheus", 0o640)
    assert site.owners["/etc/grafana/provisioning/datasources/dlcourse.yml"][1] == "grafana"
    for expected in (
        "/etc/modprobe.d/blacklist-nouveau.conf",
        "/etc/systemd/system/dlcourse-install-resume.service",
        "/opt/tljh/config/jupyterhub_config.d/dlcourse-course.py",
        "/etc/prometheus/dlcourse/dlcourse-alerts.yml",  # not .../rules/rules/...
        "/etc/grafana/dashboards/dlcourse/class-overview.json",
    ):
        assert expected in site.owners
    # Not relocated: the files name the server's paths.
    assert "LoadCredential=hub-token:/etc/dlcourse/hub-token" in site.read(
        "/etc/systemd/system/dlcourse-exporter.service"
    )


def test_secrets_are_fresh_random_values(tmp_path):
    one = render_site(tmp_path / "one", "--admin", "teacher")
    two = render_site(tmp_path / "two", "--admin", "teacher")
    for path in ("/etc/dlcourse/hub-token", "/etc/dlcourse/grafana-admin-password"):
        assert SECRET.match(one.read(path)) and SECRET.match(two.read(path))
        assert one.read(path) != two.read(path)
    assert one.read("/etc/dlcourse/hub-token") != one.read("/etc/dlcourse/prometheus-hub-token")


def _written(host: FakeHost, into: dict[str, tuple]) -> None:
    """Path -> (owner, group, mode, content) of each file the install has written, as it is."""
    paths = {a.split()[1] for a in host.actions if a.startswith("write ")}
    paths.discard(Paths().state_file)  # the installer's own bookkeeping, not configuration
    for path in paths:
        meta = host.file_meta(path)
        if meta is not None:  # the resume unit is gone once the install resumed
            into[path] = (meta.owner, meta.group, meta.mode, host.read_text(path))


def test_render_writes_exactly_what_an_install_writes(tmp_path):
    """The registry is the install: same files, modes, owners and contents (secrets aside)."""
    args = ["--admin", "teacher", "--roster", str(_roster(tmp_path)), "--reboot", "--yes"]
    host = FakeHost(tmp_path / "server")
    host.put(Paths().installer_python, "")  # bootstrap.py made the installer's venv
    installed: dict[str, tuple] = {}
    assert install(host, args)[0] == runner.EXIT_REBOOT
    _written(host, installed)
    host.reboot_now()
    rc, out = install(host, args)
    assert rc == 0, out
    _written(host, installed)

    site = render_site(tmp_path / "site", *args)
    assert set(site.owners) == set(installed)
    for path, (owner, group, mode, content) in installed.items():
        assert site.owners[path] == (owner, group, mode), path
        if SECRET.match(content):
            assert SECRET.match(site.read(path)), path
        else:
            rendered = SECRET_VALUES.sub("<secret>", site.read(path))
            assert rendered == SECRET_VALUES.sub("<secret>", content), path


def _args_of(site, default_file: str) -> list[str]:
    """The daemon's arguments, as its Debian unit passes $ARGS from /etc/default/<name>."""
    line = next(x for x in site.read(default_file).splitlines() if x.startswith("ARGS="))
    return shlex.split(line.partition("=")[2])[0].split()


def _get(url: str, auth: tuple[str, str]):
    try:
        with urllib.request.urlopen(request(url, auth), timeout=2) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def test_relocated_render_runs_the_real_daemons_from_its_folder(tmp_path):
    for tool in ("prometheus", "prometheus-alertmanager", "prometheus-node-exporter"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/apt-packages.txt lists its package)")
    ports = {name: free_port() for name in ("prometheus", "alertmanager", "node_exporter")}
    site = render_site(tmp_path / "site", "--admin", "teacher", relocate=True, ports=ports)
    daemons = []
    try:
        for tool, default_file in (
            ("prometheus-alertmanager", "/etc/default/prometheus-alertmanager"),
            ("prometheus-node-exporter", "/etc/default/prometheus-node-exporter"),
            ("prometheus", "/etc/default/prometheus"),
        ):
            argv = [shutil.which(tool), *_args_of(site, default_file)]
            daemons.append(Process(tool, argv, tmp_path))
        prom = f"http://127.0.0.1:{ports['prometheus']}"
        # Everything asks for a credential: the instructor's, from the rendered file.
        auth = ("instructor", site.read("/etc/dlcourse/monitoring/instructor.password").strip())

        def loaded():
            rules = _get(f"{prom}/api/v1/rules", auth)
            targets = _get(f"{prom}/api/v1/targets", auth)
            if not rules or not targets:
                return None
            active = targets["data"]["activeTargets"]
            up = {t["labels"]["job"] for t in active if t["health"] == "up"}
            wanted = {"node", "prometheus", "alertmanager"}  # jupyterhub, dlcourse: not here
            return len(rules["data"]["groups"]) if wanted <= up else None

        try:
            groups = wait_until(loaded, 90, "Prometheus run from the rendered folder")
        except TimeoutError as exc:
            raise AssertionError("\n".join([str(exc), *(d.log_tail() for d in daemons)])) from None
        assert groups > 0
        # Every path a daemon writes is in the folder: storage included.
        assert os.listdir(site.local("/var/lib/prometheus/metrics2"))
    finally:
        for d in daemons:
            d.stop()


def test_a_bad_port_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dlcourse_installer", "render", "--root", str(tmp_path),
         "--admin", "teacher", "--port", "prometheus=99999", "--port", "nope=1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 2, result.stderr
    assert "'99999' is not a TCP port" in result.stderr and "NAME one of hub" in result.stderr
    assert os.listdir(tmp_path) == []


def render_as_root(root) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dlcourse_installer", "render", "--root", str(root),
         "--admin", "teacher"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("planted", ["etc/dlcourse", "etc", "."])
def test_render_writes_nothing_through_a_symlink_planted_in_its_folder(tmp_path, planted):
    """Old behaviour: as root, a folder symlink planted in DIR (or DIR itself, in /tmp) was
    followed: render replaced the live token file it pointed at."""
    live = tmp_path / "live" / "etc" / "dlcourse"
    live.mkdir(parents=True)
    token = live / "exporter-token"
    token.write_text("the live token\n")
    root = tmp_path / "site"
    if planted == ".":
        root.symlink_to(tmp_path / "live")  # DIR itself
    else:
        (root / planted).parent.mkdir(parents=True, exist_ok=True)
        target = live if planted == "etc/dlcourse" else live.parent
        (root / planted).symlink_to(target)
    result = render_as_root(root)
    assert token.read_text() == "the live token\n" and os.listdir(live) == ["exporter-token"]
    assert result.returncode == 2, result.stdout + result.stderr
    shown = str(root) if planted == "." else str(root / planted)
    assert result.stderr == (
        f"dlcourse-install render: {shown} is a symbolic link: render writes nothing through one\n"
    )


def test_a_symlink_planted_at_a_file_s_place_is_replaced_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("someone else's file\n")
    root = tmp_path / "site"
    (root / "etc" / "dlcourse").mkdir(parents=True)
    (root / "etc" / "dlcourse" / "hub-token").symlink_to(outside)
    assert render_as_root(root).returncode == 0
    assert outside.read_text() == "someone else's file\n"
    rendered = root / "etc" / "dlcourse" / "hub-token"
    assert not rendered.is_symlink() and SECRET.match(rendered.read_text())
