"""Generated files, as `dlcourse-install render --relocate` writes them, checked by the real
tools that will read them."""

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest
import yaml
from jupyterhub.app import JupyterHub

from dlcourse_installer import cli
from dlcourse_installer.hub import hub_passwords, tljh_plugin
from dlcourse_installer.inputs import options
from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.layout.ports import Ports
from dlcourse_installer.rendered import generated, templates
from dlcourse_testing import tljh_env
from dlcourse_testing.rendered import render_site

from .conftest import UPSTREAM_TLJH

REPO_INSTALLER = Path(__file__).resolve().parents[2] / "installer"
FACTS = generated.Facts(python="/usr/bin/python3")
EXPORTER_UNIT = f"/etc/systemd/system/{templates.EXPORTER_SERVICE}.service"
RESUME_UNIT = f"/etc/systemd/system/{templates.RESUME_UNIT}"
GRAFANA_DROPIN = "/etc/systemd/system/grafana-server.service.d/dlcourse.conf"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/apt-packages.txt lists its package)")
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Everything an install with a roster and --reboot writes, paths pointing into the site."""
    tmp = tmp_path_factory.mktemp("generated")
    roster = tmp / "students.csv"
    roster.write_text("username,section\nada,A\ngrace,A\nalan,B\n")
    site = render_site(
        tmp / "site", "--admin", "teacher", "--roster", str(roster), "--reboot", relocate=True
    )
    # The programs the units start, which the packages install on a real server.
    relocated = Paths().under(str(site.root))
    for exe in (f"{relocated.exporter_venv}/bin/dlcourse-exporter", relocated.installer_python):
        os.makedirs(os.path.dirname(exe), exist_ok=True)
        shutil.copy("/bin/true", exe)
    return site


def _verify(units_dirs, *names) -> subprocess.CompletedProcess:
    env = dict(os.environ, SYSTEMD_UNIT_PATH=":".join(str(d) for d in units_dirs) + ":")
    return subprocess.run(
        [_tool("systemd-analyze"), "verify", *names],
        capture_output=True, text=True, env=env, cwd=units_dirs[0], timeout=60,
    )  # fmt: skip


def test_units_pass_systemd_analyze_verify(site, tmp_path):
    # The drop-ins are checked on stand-ins for the units the packages ship (the real
    # Debian ones: tests/security/test_port_takeover.py).
    packaged = ["grafana-server.service", "prometheus.service",
                "prometheus-alertmanager.service", "prometheus-node-exporter.service"]  # fmt: skip
    for name in packaged:
        (tmp_path / name).write_text("[Service]\nExecStart=/bin/true\n")
        assert site.local(f"/etc/systemd/system/{name}.d/dlcourse.conf").exists()
    units = site.local("/etc/systemd/system")
    names = [os.path.basename(EXPORTER_UNIT), templates.RESUME_UNIT, *packaged]
    result = _verify([units, tmp_path], *names)
    # verify exits 0 even for unknown keys: any message at all is a finding.
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE=%d/admin-password" in site.read(GRAFANA_DROPIN)


@pytest.mark.live
def test_systemd_analyze_verify_does_catch_a_bad_unit(tmp_path):
    """The check above can fail: a misspelt key is reported."""
    (tmp_path / "bad.service").write_text("[Service]\nExecStart=/bin/true\nProtectSystm=strict\n")
    assert "Unknown key" in _verify([tmp_path], "bad.service").stderr


@pytest.mark.live
def test_unattended_upgrades_leaves_driver_and_kernel_to_a_planned_upgrade(tmp_path):
    """Real apt reads the part and appends it to the list Ubuntu's own file starts; the
    entries match as unattended-upgrades matches them (re.match, its
    is_pkgname_in_blacklist), the driver and kernel packages and nothing else."""
    ubuntu = tmp_path / "50unattended-upgrades"
    ubuntu.write_text('Unattended-Upgrade::Package-Blacklist {\n    "libc6$";\n};\n')
    ours = tmp_path / "51dlcourse-driver-upgrades"
    ours.write_text(templates.driver_upgrades_by_hand())
    dump = subprocess.run(
        [_tool("apt-config"), "-c", str(ubuntu), "-c", str(ours), "dump",
         "Unattended-Upgrade::Package-Blacklist"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    entries = re.findall(r'^Unattended-Upgrade::Package-Blacklist:: "(.*)";$', dump, re.M)
    assert entries == ["libc6$", *templates.UNATTENDED_UPGRADES_SKIPPED]

    def skipped(name):
        return any(re.match(entry, name) for entry in entries[1:])

    for name in ("nvidia-utils-580-server", "libnvidia-compute-580-server",
                 "nvidia-headless-no-dkms-580-server-open", "linux-image-generic",
                 "linux-image-6.8.0-50-generic", "linux-headers-generic-hwe-24.04",
                 "linux-modules-nvidia-580-server-open-generic", "linux-modules-6.8.0-50-generic",
                 "linux-signatures-nvidia-6.8.0-50-generic"):  # fmt: skip
        assert skipped(name), name
    for name in ("openssl", "linux-firmware", "linux-libc-dev", "python3", "grafana"):
        assert not skipped(name), name


def test_exporter_unit_is_hardened_and_keeps_the_token_out_of_argv():
    unit = templates.exporter_unit(Paths(), Ports())
    assert "User=dlcourse-exporter" in unit
    assert "LoadCredential=hub-token:/etc/dlcourse/hub-token" in unit
    assert "--hub.token-file=%d/hub-token" in unit
    assert "LoadCredential=web-token:/etc/dlcourse/exporter-token" in unit
    assert "--web.token-file=%d/web-token" in unit
    # The culler's own token: it cannot read /metrics, Prometheus cannot report culls.
    assert "LoadCredential=culler-token:/etc/dlcourse/exporter-culler-token" in unit
    assert "--web.culler-token-file=%d/culler-token" in unit
    # Ports below 1024 (installer/layout/ports.py): its own, and the hub's.
    assert "    --web.listen-address=127.0.0.1:945 \\" in unit.splitlines()
    assert "--hub.url=http://127.0.0.1:951/hub/api" in unit
    caps = "CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_NET_ADMIN CAP_NET_BIND_SERVICE"
    assert f"CapabilityBoundingSet={caps}" in unit and f"AmbientCapabilities={caps}" in unit
    # Restarted forever, but a bad configuration exits 2 and is not; connections need
    # descriptors.
    assert {"Restart=always", "StartLimitIntervalSec=0"} <= set(unit.splitlines())
    assert "RestartPreventExitStatus=2" in unit.splitlines()
    assert "LimitNOFILE=65536" in unit.splitlines()
    # Kernels' connection files, and their CUDA OOM notes, are in the students' homes: a
    # hidden /home made every killed kernel look shut down (its file "gone").
    assert "ProtectHome=read-only" in unit.splitlines()


def test_every_kernel_of_the_users_environment_loads_the_gpu_errors_extension(tmp_path):
    """The kernel config, run the way traitlets runs a config file, registers the extension
    the plan copies beside it (the live tests load it in real kernels)."""
    from traitlets.config import Config

    plan = {f.path: f for f in generated.plan(Paths(), Ports(), options.Options(), FACTS)}
    folder = Paths().user_ipython_config_dir
    extension = plan[f"{folder}/{templates.KERNEL_GPU_ERRORS}.py"].content
    assert extension == (REPO_INSTALLER / "probes" / "kernel_gpu_errors.py").read_text()
    (tmp_path / f"{templates.KERNEL_GPU_ERRORS}.py").write_text(extension)
    config_file = tmp_path / "ipython_kernel_config.py"
    config_file.write_text(plan[f"{folder}/ipython_kernel_config.py"].content)
    config = Config()
    config.InteractiveShellApp.extensions = ["autoreload"]  # a course's own stays
    namespace = {"c": config, "__file__": str(config_file)}
    try:
        exec(compile(config_file.read_text(), str(config_file), "exec"), namespace)
        loaded = sys.modules[templates.KERNEL_GPU_ERRORS]
        assert loaded.__file__ == str(tmp_path / f"{templates.KERNEL_GPU_ERRORS}.py")
        assert config.InteractiveShellApp.extensions == ["autoreload", templates.KERNEL_GPU_ERRORS]
    finally:
        sys.modules.pop(templates.KERNEL_GPU_ERRORS, None)


def test_prometheus_config_and_its_rules_pass_promtool(site):
    config = site.local("/etc/prometheus/prometheus.yml")
    rule_files = yaml.safe_load(config.read_text())["rule_files"]
    assert len(rule_files) >= 2 and all(f.startswith(str(site.root)) for f in rule_files)
    # `check config` checks every rule file it names, and the token file exists.
    result = subprocess.run(
        [_tool("promtool"), "check", "config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") >= 1 + len(rule_files), result.stdout


def test_alertmanager_config_passes_amtool(site, tmp_path):
    ours = tmp_path / "alertmanager.yml"
    ours.write_text(templates.default_alertmanager_config())  # when no asset is packaged
    for config in (str(ours), str(site.local("/etc/prometheus/alertmanager.yml"))):
        result = subprocess.run(
            [_tool("amtool"), "check-config", config], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"{config}: {result.stdout}{result.stderr}"


def test_grafana_provisioning_points_at_the_stack(site):
    """The repository's provisioning (shared with docker-compose.yml), with this install's
    addresses and folder; relocated, the folder is in the site and has the dashboards."""
    datasources = yaml.safe_load(site.read("/etc/grafana/provisioning/datasources/dlcourse.yml"))
    urls = {d["type"]: d["url"] for d in datasources["datasources"]}
    assert urls == {"prometheus": "http://127.0.0.1:947", "alertmanager": "http://127.0.0.1:948"}
    # Basic auth, the password read by Grafana from its own file ($__file{}), never inline.
    password_file = site.local("/etc/dlcourse/monitoring/grafana.password")
    for datasource in datasources["datasources"]:
        assert datasource["basicAuth"] is True and datasource["basicAuthUser"] == "grafana"
        assert datasource["secureJsonData"]["basicAuthPassword"] == f"$__file{{{password_file}}}"
    provider = yaml.safe_load(site.read("/etc/grafana/provisioning/dashboards/dlcourse.yml"))
    folder = provider["providers"][0]["options"]["path"]
    assert folder.startswith(str(site.root))
    dashboards = sorted(os.listdir(folder))
    assert "class-overview.json" in dashboards and len(dashboards) >= 4
    home = f"\ndefault_home_dashboard_path = {folder}/class-overview.json\n"
    assert home in site.read("/etc/grafana/grafana.ini")


@pytest.mark.live
def test_grafana_provisioning_follows_moved_ports(tmp_path):
    site = render_site(tmp_path / "site", "--admin", "t", ports={"prometheus": 19090,
                       "alertmanager": 19093})  # fmt: skip
    text = site.read("/etc/grafana/provisioning/datasources/dlcourse.yml")
    assert "url: http://127.0.0.1:19090" in text and "url: http://127.0.0.1:19093" in text
    assert ":9090" not in text and ":9093" not in text


TLJH_LIKE_CONFIG = """
# What TLJH's jupyterhub_config.py does, in its order: configurer.apply_config assigns the
# services list (the idle culler), the plugins' tljh_custom_jupyterhub_config hooks run,
# then every jupyterhub_config.d/*.py is loaded with load_subconfig.
from glob import glob

c.JupyterHub.hub_port = 15001  # tljh/jupyterhub_config.py
c.JupyterHub.services = [
    {"name": "cull-idle", "admin": True,
     "command": ["python3", "-m", "jupyterhub_idle_culler", "--timeout=600"]},
]
# TLJH itself sets no roles (tljh/ has no load_roles): a lecturer's own, kept by the append.
c.JupyterHub.load_roles = [{"name": "lecturer-own", "scopes": ["read:users:name"]}]
for extra in sorted(glob(CONFIG_D + "/*.py")):
    load_subconfig(extra)
"""


def test_hub_snippets_load_into_a_real_jupyterhub_and_append(site, tmp_path):
    config_d = site.local("/opt/tljh/config/jupyterhub_config.d")
    main = tmp_path / "jupyterhub_config.py"
    main.write_text(f"CONFIG_D = {str(config_d)!r}\n" + TLJH_LIKE_CONFIG)

    hub = JupyterHub()
    hub.load_config_file(str(main))  # traitlets' PyFileConfigLoader, as `jupyterhub -f`
    assert hub.hub_port == Ports().hub  # below 1024, over TLJH's 15001

    names = [s["name"] for s in hub.services]
    assert names == [
        "cull-idle", "dlcourse-exporter", "dlcourse-prometheus", "dlcourse-status", "grafana",
        "my-gpu",
    ]  # fmt: skip
    exporter = hub.services[1]
    # read from the root-only file when the hub starts
    assert exporter["api_token"] == site.read("/etc/dlcourse/hub-token").strip()
    roles = {r["name"]: r for r in hub.load_roles}
    assert set(roles) == {
        "lecturer-own", "user", "dlcourse-exporter", "dlcourse-prometheus", "dlcourse-staff"
    }  # fmt: skip
    assert roles["dlcourse-exporter"]["scopes"] == list(templates.EXPORTER_SCOPES)
    assert roles["dlcourse-exporter"]["services"] == ["dlcourse-exporter"]
    assert roles["dlcourse-prometheus"]["scopes"] == ["read:metrics"]
    # The staff group may open the two staff services, and do nothing else.
    assert roles.pop("dlcourse-staff") == {
        "name": "dlcourse-staff",
        "description": "dlcourse staff: the class-status page and Grafana",
        "scopes": ["access:services!service=dlcourse-status", "access:services!service=grafana"],
        "groups": ["instructors"],
    }
    # Every user may open their own page (installer/rendered/students.py), and no more.
    assert roles.pop("user")["scopes"] == ["self", "access:services!service=my-gpu"]
    for role in roles.values():
        assert not any(s.startswith(("access:", "admin")) for s in role["scopes"])
    assert hub.load_groups["section-a"]["users"] == ["ada", "grace"]
    assert hub.load_groups["section-b"]["users"] == ["alan"]
    status, grafana = hub.services[3:5]
    assert grafana["url"] == "http://127.0.0.1:950"
    assert grafana["api_token"] == site.read("/etc/dlcourse/grafana-oauth-secret").strip()
    assert (
        status["environment"]["DLCOURSE_EXPORTER_TOKEN"]
        == site.read("/etc/dlcourse/exporter-token").strip()
    )


def tljh_hooks():
    """TLJH's own tljh/hooks.py (it imports only pluggy), from TLJH's source beside the
    checkout; tests/tljh_conformance runs the rest of TLJH's code with the plugin."""
    reason = tljh_env.absent_reason()
    if reason:
        pytest.skip(reason)
    spec = importlib.util.spec_from_file_location("tljh_hooks", tljh_env.UPSTREAM / "tljh/hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tljh_plugin_registers_through_the_tljh_entry_point(tmp_path, monkeypatch):
    # TLJH's get_plugin_manager: its hookspecs, then every `tljh` entry point.
    pm = pluggy.PluginManager("tljh")
    pm.add_hookspecs(tljh_hooks())
    pm.load_setuptools_entrypoints("tljh")
    assert pm.get_plugin("dlcourse") is tljh_plugin
    pm.check_pending()  # every hookimpl of ours matches a TLJH hook
    # The plugin writes no file itself (its old tljh_post_install wrote JSON in place): the
    # installer's registry has the settings file, written atomically.
    assert not pm.hook.tljh_post_install.get_hookimpls()

    # TLJH installs these with `pip install --upgrade` and no constraints at every upgrade:
    # each is pinned exactly.
    assert pm.hook.tljh_extra_user_pip_packages() == [
        ["jupyterlab-nvdashboard==0.15.0", "jupyter-resource-usage==1.3.0", "ipywidgets==8.1.9"]
    ]
    from traitlets.config import Config

    c = Config()
    pm.hook.tljh_custom_jupyterhub_config(c=c)
    hub = JupyterHub(config=c)
    assert hub.authenticate_prometheus is True
    from jupyterhub.spawner import Spawner

    assert Spawner(config=c).environment["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"

    # Before TLJH first starts the hub: the admins' passwords go into its store.
    monkeypatch.setenv("TLJH_INSTALL_PREFIX", str(tmp_path / "tljh"))
    monkeypatch.setenv("DLCOURSE_ETC", str(tmp_path / "etc"))
    (tmp_path / "etc/hub-passwords").mkdir(parents=True)
    (tmp_path / "etc/hub-passwords/teacher").write_text("a-generated-password\n")
    pm.hook.tljh_config_post_install(config={})
    assert hub_passwords.missing(str(tmp_path / "etc/hub-passwords"),
                                 str(tmp_path / "tljh/state/passwords.dbm")) == []  # fmt: skip


def test_secret_files_are_created_root_only(tmp_path):
    from dlcourse_installer.machine import files
    from dlcourse_installer.machine.host import RealHost

    host = RealHost(root=str(tmp_path))
    if os.geteuid() != 0:
        pytest.skip("writing root-owned files needs root")
    assert files.ensure_secret(host, "/etc/dlcourse/hub-token")
    st = os.stat(tmp_path / "etc/dlcourse/hub-token")
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    assert not files.ensure_secret(host, "/etc/dlcourse/hub-token")  # made once, kept


def test_the_pinned_tljh_and_the_tested_jupyterhub_agree():
    """TLJH 2.0.0 is pinned (1.0.0 was: JupyterHub 4, Python 3.10, a Mambaforge download
    upstream stopped); the tests run the JupyterHub major that TLJH release installs."""
    import jupyterhub

    assert options.DEFAULT_TLJH_VERSION == "2.0.0"
    requirements = os.path.join(UPSTREAM_TLJH, "tljh", "requirements-hub-env.txt")
    if not os.path.exists(requirements):
        pytest.skip("no ../shared/upstream copy of TLJH 2.0.0")
    with open(requirements) as f:
        (spec,) = [line for line in f if line.startswith("jupyterhub>=")]
    assert spec.strip() == "jupyterhub>=5.2.0,<6"
    assert jupyterhub.__version__.split(".")[0] == "5"


def test_docker_stack_option_is_gone(capsys):
    """--stack docker could not start (no Dockerfile, sources, secrets or NVIDIA toolkit)."""
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["--admin", "t", "--stack", "docker"])
    assert exit_.value.code == 2 and "unrecognized arguments: --stack" in capsys.readouterr().err
