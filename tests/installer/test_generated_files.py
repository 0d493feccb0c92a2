"""Generated files checked by the real tools that will read them."""

import glob
import os
import shutil
import stat
import subprocess

import pluggy
import pytest
from jupyterhub.app import JupyterHub

from dlcourse_installer import steps, templates, tljh_plugin
from dlcourse_installer.paths import Paths

from .conftest import REPO, rooted


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/apt-packages.txt lists its package)")
    return path


@pytest.fixture
def layout(tmp_path):
    paths = rooted(Paths(), tmp_path)
    exe = f"{paths.exporter_venv}/bin/dlcourse-exporter"
    os.makedirs(os.path.dirname(exe))
    shutil.copy("/bin/true", exe)
    os.makedirs(paths.etc)
    for token in (paths.hub_token, paths.metrics_token, paths.grafana_password):
        with open(token, "w") as f:
            f.write("0123456789abcdef\n")
        os.chmod(token, 0o600)
    return paths


def _verify(units_dir, *names) -> subprocess.CompletedProcess:
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{units_dir}:")
    return subprocess.run(
        [_tool("systemd-analyze"), "verify", *names],
        capture_output=True, text=True, env=env, cwd=units_dir, timeout=60,
    )  # fmt: skip


@pytest.mark.live
def test_units_pass_systemd_analyze_verify(layout, tmp_path):
    units = tmp_path / "units"
    (units / "grafana-server.service.d").mkdir(parents=True)
    (units / "dlcourse-exporter.service").write_text(templates.exporter_unit(layout))
    (units / templates.RESUME_UNIT).write_text(templates.resume_unit(layout, "/usr/bin/python3"))
    # The drop-in is checked on a stand-in for the unit Grafana's package ships.
    (units / "grafana-server.service").write_text("[Service]\nExecStart=/bin/true\n")
    (units / "grafana-server.service.d/dlcourse.conf").write_text(
        templates.grafana_dropin(layout, port=None)
    )
    result = _verify(
        units, "dlcourse-exporter.service", templates.RESUME_UNIT, "grafana-server.service"
    )
    # verify exits 0 even for unknown keys: any message at all is a finding.
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.live
def test_systemd_analyze_verify_does_catch_a_bad_unit(tmp_path):
    """The check above can fail: a misspelt key is reported."""
    (tmp_path / "bad.service").write_text("[Service]\nExecStart=/bin/true\nProtectSystm=strict\n")
    assert "Unknown key" in _verify(tmp_path, "bad.service").stderr


def test_exporter_unit_is_hardened_and_keeps_the_token_out_of_argv():
    unit = templates.exporter_unit(Paths())
    assert "User=dlcourse-exporter" in unit
    assert "LoadCredential=hub-token:/etc/dlcourse/hub-token" in unit
    assert "--hub.token-file=%d/hub-token" in unit
    assert "--web.listen-address=127.0.0.1:9945" in unit
    assert "--hub.url=http://127.0.0.1:15001/hub/api" in unit
    caps = "CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_NET_ADMIN"
    assert f"CapabilityBoundingSet={caps}" in unit and f"AmbientCapabilities={caps}" in unit
    # A bad configuration exits 2 and must not restart forever; connections need descriptors.
    assert "RestartPreventExitStatus=2" in unit.splitlines()
    assert "LimitNOFILE=8192" in unit.splitlines()


def _rule_files() -> list[str]:
    found = steps.repo_files(REPO, "prometheus", (".yml", ".yaml"))
    return [f for f in found if steps.is_rule_file(f)]


@pytest.mark.live
def test_prometheus_config_passes_promtool(layout, tmp_path):
    config = tmp_path / "prometheus.yml"
    config.write_text(templates.prometheus_config(layout, _rule_files()))
    result = subprocess.run(
        [_tool("promtool"), "check", "config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.live
def test_repository_rules_pass_promtool():
    rules = _rule_files()
    if not rules:
        pytest.skip("prometheus/ has no rule files yet")
    result = subprocess.run(
        [_tool("promtool"), "check", "rules", *rules], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.live
def test_alertmanager_config_passes_amtool(tmp_path):
    ours = tmp_path / "alertmanager.yml"
    ours.write_text(templates.default_alertmanager_config())
    configs = [str(ours)] + glob.glob(f"{REPO}/prometheus/**/alertmanager.y*ml", recursive=True)
    for config in configs:
        result = subprocess.run(
            [_tool("amtool"), "check-config", config], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"{config}: {result.stdout}{result.stderr}"


TLJH_LIKE_CONFIG = """
# What TLJH's jupyterhub_config.py does, in its order: configurer.apply_config assigns the
# services list (the idle culler), the plugins' tljh_custom_jupyterhub_config hooks run,
# then every jupyterhub_config.d/*.py is loaded with load_subconfig.
from glob import glob

c.JupyterHub.services = [
    {"name": "cull-idle", "admin": True,
     "command": ["python3", "-m", "jupyterhub_idle_culler", "--timeout=600"]},
]
c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self"]}]
for extra in sorted(glob(CONFIG_D + "/*.py")):
    load_subconfig(extra)
"""


def test_hub_snippets_load_into_a_real_jupyterhub_and_append(layout, tmp_path):
    config_d = tmp_path / "jupyterhub_config.d"
    config_d.mkdir()
    (config_d / "dlcourse-services.py").write_text(
        templates.hub_services_snippet(layout, grafana_route=True)
    )
    (config_d / "dlcourse-course.py").write_text(
        templates.course_snippet({"section-a": ["ada", "grace"], "section-b": ["alan"]})
    )
    main = tmp_path / "jupyterhub_config.py"
    main.write_text(f"CONFIG_D = {str(config_d)!r}\n" + TLJH_LIKE_CONFIG)

    hub = JupyterHub()
    hub.load_config_file(str(main))  # traitlets' PyFileConfigLoader, as `jupyterhub -f`

    names = [s["name"] for s in hub.services]
    assert names == ["cull-idle", "dlcourse-exporter", "dlcourse-prometheus", "grafana"]
    exporter = hub.services[1]
    assert exporter["api_token"] == "0123456789abcdef"  # read from the file at hub start
    roles = {r["name"]: r for r in hub.load_roles}
    assert set(roles) == {"user", "dlcourse-exporter", "dlcourse-prometheus"}
    assert roles["dlcourse-exporter"]["scopes"] == [
        "list:users", "read:users:name", "read:users:activity", "read:users:groups",
        "read:servers",
    ]  # fmt: skip
    assert roles["dlcourse-exporter"]["services"] == ["dlcourse-exporter"]
    assert roles["dlcourse-prometheus"]["scopes"] == ["read:metrics"]
    for role in roles.values():
        assert not any(s.startswith(("access:", "admin")) for s in role["scopes"])
    assert hub.load_groups["section-a"]["users"] == ["ada", "grace"]
    assert hub.services[3]["url"] == "http://127.0.0.1:3000"


# tljh/hooks.py of The Littlest JupyterHub, as facts: the project name, hook names and
# their arguments. (TLJH is not on PyPI.)
tljh_hookspec = pluggy.HookspecMarker("tljh")


class TljhHookSpecs:
    @tljh_hookspec
    def tljh_extra_user_conda_packages(self): ...

    @tljh_hookspec
    def tljh_extra_user_pip_packages(self): ...

    @tljh_hookspec
    def tljh_extra_hub_pip_packages(self): ...

    @tljh_hookspec
    def tljh_extra_apt_packages(self): ...

    @tljh_hookspec
    def tljh_custom_jupyterhub_config(self, c): ...

    @tljh_hookspec
    def tljh_config_post_install(self, config): ...

    @tljh_hookspec
    def tljh_post_install(self): ...

    @tljh_hookspec
    def tljh_new_user_create(self, username): ...


def test_tljh_plugin_registers_through_the_tljh_entry_point(tmp_path, monkeypatch):
    # TLJH's get_plugin_manager: its hookspecs, then every `tljh` entry point.
    pm = pluggy.PluginManager("tljh")
    pm.add_hookspecs(TljhHookSpecs)
    pm.load_setuptools_entrypoints("tljh")
    assert pm.get_plugin("dlcourse") is tljh_plugin
    pm.check_pending()  # every hookimpl of ours matches a TLJH hook

    assert pm.hook.tljh_extra_user_pip_packages() == [
        ["jupyterlab-nvdashboard", "jupyter-resource-usage", "ipywidgets"]
    ]
    from traitlets.config import Config

    c = Config()
    pm.hook.tljh_custom_jupyterhub_config(c=c)
    hub = JupyterHub(config=c)
    assert hub.authenticate_prometheus is True
    from jupyterhub.spawner import Spawner

    assert Spawner(config=c).environment["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"

    monkeypatch.setenv("TLJH_INSTALL_PREFIX", str(tmp_path))
    pm.hook.tljh_post_install()
    written = tmp_path / "user/etc/jupyter/jupyter_server_config.d/dlcourse-resource-usage.json"
    assert '"track_cpu_percent": true' in written.read_text()


def test_secret_files_are_created_root_only(tmp_path):
    from dlcourse_installer import files
    from dlcourse_installer.host import RealHost

    host = RealHost(root=str(tmp_path))
    if os.geteuid() != 0:
        pytest.skip("writing root-owned files needs root")
    assert files.ensure_secret(host, "/etc/dlcourse/hub-token")
    st = os.stat(tmp_path / "etc/dlcourse/hub-token")
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    assert not files.ensure_secret(host, "/etc/dlcourse/hub-token")  # made once, kept
