"""The checklist against a fake Ubuntu 24.04 GPU server: plan, idempotence, resume, reboot."""

import json

from dlcourse_installer import cli
from dlcourse_installer.checklist import runner
from dlcourse_installer.checklist.state import State
from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.layout.ports import Ports
from dlcourse_installer.rendered import templates

from .conftest import install
from .fakehost import UBUNTU_22_04, FakeHost

ARGV = ["--admin", "teacher", "--yes", "--mem-limit", "4G", "--cpu-limit", "2"]

# The milestones of a fresh install, in the seed guide's order and then the course's.
MILESTONES = [
    "apt-get install -y python3-venv",
    "ubuntu-drivers install --gpgpu nvidia:580-server-open",
    "apt-get install -y nvidia-utils-580-server",
    "write /etc/modprobe.d/blacklist-nouveau.conf",
    "write /etc/apt/apt.conf.d/51dlcourse-driver-upgrades",
    "write /etc/systemd/system/nvidia-persistenced.service.d/dlcourse.conf",
    "update-initramfs -u",
    "systemctl restart nvidia-persistenced.service",
    "write /etc/dlcourse/hub-passwords/teacher (0600 root:root)",
    "tljh-bootstrap-2.0.0.py --version 2.0.0 --admin teacher --plugin",
    "pip install jupyterlab-nvdashboard==0.15.0 jupyter-resource-usage==1.3.0 ipywidgets==8.1.9",
    "--index-url https://download.pytorch.org/whl/cu132 torch torchvision",
    "useradd --system --no-create-home",  # the GPU check's temporary account
    "write /opt/tljh/user/pytorch-constraints.txt",
    "write /opt/tljh/user/pip.conf",
    "write /opt/tljh/user/conda-meta/pinned",
    "tljh-config set limits.memory 4G",
    "tljh-config set limits.cpu 2",
    "useradd --system --user-group",
    "write /etc/dlcourse/hub-token (0600 root:root)",
    "write /opt/tljh/config/jupyterhub_config.d/dlcourse-services.py",
    "write /etc/systemd/system/dlcourse-exporter.service",
    "systemctl enable --now dlcourse-exporter.service",
    "apt-get install -y prometheus prometheus-alertmanager prometheus-node-exporter",
    "chmod 0640 /etc/dlcourse/prometheus-hub-token; chown root:prometheus",
    "write /etc/prometheus/prometheus.yml",
    "-o /etc/apt/keyrings/grafana.asc https://apt.grafana.com/gpg.key",
    "apt-get install -y grafana",
    "write /etc/dlcourse/grafana-admin-password (0600 root:root)",
    "systemctl enable --now grafana-server",
]


def positions(actions: list[str], milestones: list[str]) -> list[int]:
    found = []
    for m in milestones:
        hits = [i for i, a in enumerate(actions) if m in a]
        assert hits, f"never done: {m}"
        found.append(hits[0])
    return found


def test_fresh_host_yields_the_full_plan_in_order(tmp_path):
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_OK, out
    order = positions(host.actions, MILESTONES)
    assert order == sorted(order), "steps ran out of order"
    for n in range(1, 11):
        assert f"[{n}/10]" in out
    assert "PyTorch cu132 checked on every GPU as an unprivileged account" in out
    assert "Grafana      http://gpu-server.example.edu/services/grafana/" in out
    assert "class status http://gpu-server.example.edu/services/dlcourse-status/" in out
    assert host.active >= {"jupyterhub", "dlcourse-exporter", "prometheus", "grafana-server"}


def test_ubuntu_22_04s_node_exporter_gets_its_own_flag_name(tmp_path):
    """Before: --web.config.file, which 22.04's node_exporter 1.3.1 does not know (it says
    --web.config): the exporter did not start and the final check failed."""
    host = FakeHost(tmp_path, driver_needs_reboot=False, os_release=UBUNTU_22_04)
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_OK, out
    args = host.read_text("/etc/default/prometheus-node-exporter")
    assert "--web.config=/etc/dlcourse/monitoring/node-exporter-web.yml" in args
    assert "--web.config.file" not in args
    # Prometheus 2.31 and Alertmanager 0.23 on 22.04 know --web.config.file.
    assert "--web.config.file=" in host.read_text("/etc/default/prometheus")
    host.actions.clear()
    assert install(host, ARGV)[0] == runner.EXIT_OK and host.actions == []


def test_the_node_exporter_flag_follows_its_version(paths):
    def flag(version):
        return templates.node_exporter_args(paths, Ports(), version)[1].partition("=")[0]

    assert flag("1.3.1-1ubuntu0.22.04.3") == flag("1.4.0-1") == "--web.config"
    assert flag("1.5.0-1+b6") == flag("1:1.9.0~ds-1") == flag("") == "--web.config.file"


def test_second_run_performs_no_action(tmp_path):
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    assert install(host, ARGV)[0] == runner.EXIT_OK
    host.actions.clear()
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_OK
    assert host.actions == []
    assert out.count("done in an earlier run") == 8


def test_every_step_rechecked_on_the_result_changes_nothing(tmp_path):
    """Not only skipped: each step's own check finds everything in place."""
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    assert install(host, ARGV)[0] == runner.EXIT_OK
    host.actions.clear()
    rc, out = install(host, [*ARGV, "--recheck"])
    assert rc == runner.EXIT_OK, out
    # Only the state file notes the new command line.
    assert host.actions == ["write /opt/dlcourse/state/install-state.json (0600 root:root)"]
    assert "done in an earlier run" not in out


def test_failure_in_a_step_keeps_earlier_steps_and_the_rerun_resumes_there(tmp_path):
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    host.fail = "download.pytorch.org"  # step 5, users' environment
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_FAILED
    assert "step 'Users' environment (PyTorch, CUDA)' failed" in out
    assert "/opt/dlcourse/install.log" in out
    state = State.load(host, Paths())
    assert set(state.done) == {"base-packages", "nvidia-driver", "tljh"}

    host.fail = None
    host.actions.clear()
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_OK, out
    assert out.count("done in an earlier run") == 3
    # The first change of the rerun is step 5's, not a repeat of steps 2-4.
    assert "--index-url https://download.pytorch.org/whl/cu132" in host.actions[0]
    assert not any("bootstrap" in a or "ubuntu-drivers" in a for a in host.actions)


def test_reboot_then_rerun_resumes(tmp_path):
    host = FakeHost(tmp_path)
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_REBOOT
    assert "Reboot the server" in out
    assert State.load(host, Paths()).reboot_pending

    host.actions.clear()  # a rerun before the reboot changes nothing and says so again
    assert install(host, ARGV)[0] == runner.EXIT_REBOOT
    assert host.actions == []

    host.reboot_now()
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_OK, out
    assert "driver 580.65.06 loaded; nvidia-smi and NVML see all 1 GPU(s)" in out
    assert not State.load(host, Paths()).reboot_pending


def test_reboot_flag_reboots_and_resumes_through_a_one_shot_unit(tmp_path):
    host = FakeHost(tmp_path)
    rc, out = install(host, [*ARGV, "--reboot", "--roster", str(roster(tmp_path))])
    assert rc == runner.EXIT_REBOOT
    unit = host.read_text(f"/etc/systemd/system/{templates.RESUME_UNIT}")
    assert "ExecStart=" in unit and "-m dlcourse_installer resume" in unit
    assert "dlcourse-install-resume" in host.enabled
    assert host.runs[-1] == "run systemctl reboot"

    host.reboot_now()
    host.actions.clear()
    rc = cli.resume(host, Paths())  # what the unit runs at boot
    assert rc == runner.EXIT_OK
    assert not host.exists(f"/etc/systemd/system/{templates.RESUME_UNIT}")
    assert "dlcourse-install-resume" not in host.enabled
    # the roster given before the reboot was applied after it
    assert host.tljh_config["users"]["allowed"] == ["ada", "grace", "alan"]


def test_a_new_roster_reruns_only_the_course_step(tmp_path):
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    assert install(host, ARGV)[0] == runner.EXIT_OK
    host.actions.clear()
    rc, out = install(host, [*ARGV, "--roster", str(roster(tmp_path))])
    assert rc == runner.EXIT_OK
    assert out.count("done in an earlier run") == 7
    snippet = host.read_text("/opt/tljh/config/jupyterhub_config.d/dlcourse-course.py")
    assert '"section-a"' in snippet and '"section-b-2"' in snippet
    assert "run systemctl restart jupyterhub" in host.actions


def test_the_hub_never_listens_with_a_claimable_admin(tmp_path):
    """The admin's password is in TLJH's store before TLJH first starts the hub."""
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_OK, out
    assert host.claimable_when_hub_started == []
    assert host.hub_passwords == {"teacher"}
    assert host.file_meta("/etc/dlcourse/hub-passwords/teacher").mode == 0o600
    assert "password in /etc/dlcourse/hub-passwords/teacher" in out
    password = host.read_text("/etc/dlcourse/hub-passwords/teacher").strip()
    assert password not in out + json.dumps(host.commands)


def test_tljh_installed_before_dlcourse_gets_the_plugin_and_the_password(tmp_path):
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    host._tljh_bootstrap(["--admin", "teacher"], {"TLJH_INSTALL_PREFIX": "/opt/tljh"})
    assert host.claimable_when_hub_started == ["teacher"] and not host.plugin_installed
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_OK, out
    assert host.plugin_installed and host.hub_passwords == {"teacher"}
    assert not any("bootstrap" in a for a in host.actions)


def test_a_hub_that_does_not_come_back_stops_the_install_with_a_pointer(tmp_path):
    class DeadHub(FakeHost):
        def _systemctl(self, args):
            result = super()._systemctl(args)
            if args[0] == "restart" and "jupyterhub" in args:
                self.active.discard("jupyterhub")  # crashes on the new configuration
            return result

    host = DeadHub(tmp_path, driver_needs_reboot=False)
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_FAILED
    assert "the hub did not come back within two minutes" in out
    assert "journalctl -u jupyterhub" in out


def test_purge_restores_nouveau(tmp_path):
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    assert install(host, ARGV)[0] == runner.EXIT_OK
    assert host.exists("/etc/modprobe.d/blacklist-nouveau.conf")
    assert cli.driver(["--purge"], host, Paths()) == 0
    assert not any(p.startswith("nvidia-") for p in host.packages)
    (purge,) = [a for a in host.actions if a.startswith("run apt-get purge -y ")]
    assert "nvidia-headless-no-dkms-580-server-open" in purge
    assert "linux-modules-nvidia-580-server-open-6.8.0-45-generic" in purge
    for gone in ("/etc/modprobe.d/blacklist-nouveau.conf",
                 "/etc/apt/apt.conf.d/51dlcourse-driver-upgrades",
                 "/etc/systemd/system/nvidia-persistenced.service.d/dlcourse.conf"):  # fmt: skip
        assert not host.exists(gone), gone
    assert host.runs[-2:] == ["run update-initramfs -u", "run systemctl daemon-reload"]
    state = State.load(host, Paths())
    assert "nvidia-driver" not in state.done and state.reboot_pending
    host.reboot_now()
    assert not host.driver_loaded


def test_secrets_are_root_only_and_never_in_output(tmp_path):
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_OK
    token = host.read_text("/etc/dlcourse/hub-token").strip()
    assert len(token) == 64
    assert host.file_meta("/etc/dlcourse/hub-token").mode == 0o600
    meta = host.file_meta("/etc/dlcourse/prometheus-hub-token")
    assert (meta.mode, meta.group) == (0o640, "prometheus")
    assert host.file_meta("/etc/dlcourse/grafana-admin-password").mode == 0o600
    everything = out + json.dumps(host.commands) + "".join(host.actions)
    assert token not in everything
    assert token not in host.read_text("/opt/tljh/config/jupyterhub_config.d/dlcourse-services.py")


def test_status_lists_the_steps(tmp_path, capsys):
    host = FakeHost(tmp_path)
    install(host, ARGV)
    cli.status(host, Paths())
    text = capsys.readouterr().out
    assert "Base packages" in text and "done 20" in text
    assert "A reboot is pending" in text


def test_bad_options_are_all_listed_and_nothing_runs(tmp_path, capsys):
    host = FakeHost(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("username,section\nAda Lovelace,a\nalan\n")
    rc = cli.install(["--mem-limit", "lots", "--roster", str(bad)], host=host, paths=Paths())
    assert rc == runner.EXIT_BAD_OPTIONS
    err = capsys.readouterr().err
    for text in ("--admin NAME is required", "--mem-limit 'lots'", "bad.csv:2:", "bad.csv:3:"):
        assert text in err
    assert host.commands == []


def roster(tmp_path):
    path = tmp_path / "students.csv"
    path.write_text("username,section\nada,A\ngrace,A\nalan,B 2\n")
    return path
