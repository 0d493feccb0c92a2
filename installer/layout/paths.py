"""Every location the installer touches, derived from its prefixes.

dlcourse's own files live under ``prefix`` (``DLCOURSE_PREFIX``, default /opt/dlcourse) and its
secrets under ``etc`` (/etc/dlcourse); TLJH's under ``tljh_prefix`` (``TLJH_INSTALL_PREFIX``, as
TLJH itself reads it). The rest are where Ubuntu's packages expect them. All are server paths:
the ``Host`` maps them under its root, which is how the tests install into a temporary folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Paths:
    prefix: str = "/opt/dlcourse"
    etc: str = "/etc/dlcourse"
    tljh_prefix: str = "/opt/tljh"

    @classmethod
    def from_env(cls, prefix: str | None = None) -> Paths:
        return cls(
            prefix=prefix or os.environ.get("DLCOURSE_PREFIX", cls.prefix),
            etc=os.environ.get("DLCOURSE_ETC", cls.etc),
            tljh_prefix=os.environ.get("TLJH_INSTALL_PREFIX", cls.tljh_prefix),
        )

    def under(self, root: str) -> Paths:
        """The same layout with every path under ``root``: ``render --relocate`` writes files
        whose paths point there, so tests can run the real daemons from that folder."""
        root = root.rstrip("/")
        return Paths(**{f.name: root + getattr(self, f.name) for f in fields(self)})

    # -- dlcourse ---------------------------------------------------------------
    @property
    def state_file(self) -> str:
        return f"{self.prefix}/state/install-state.json"

    @property
    def log_file(self) -> str:
        return f"{self.prefix}/install.log"

    @property
    def installer_venv(self) -> str:
        """Made by bootstrap.py; the resume unit runs the installer from it."""
        return f"{self.prefix}/venv"

    @property
    def installer_python(self) -> str:
        return f"{self.installer_venv}/bin/python3"

    @property
    def exporter_venv(self) -> str:
        return f"{self.prefix}/exporter"

    @property
    def cache(self) -> str:
        return f"{self.prefix}/cache"

    @property
    def hub_token(self) -> str:
        return f"{self.etc}/hub-token"

    @property
    def metrics_token(self) -> str:
        return f"{self.etc}/prometheus-hub-token"

    @property
    def grafana_password(self) -> str:
        return f"{self.etc}/grafana-admin-password"

    @property
    def hub_passwords_dir(self) -> str:
        """One root-only file per hub account whose password the installer pre-sets."""
        return f"{self.etc}/hub-passwords"

    def hub_password(self, name: str) -> str:
        return f"{self.hub_passwords_dir}/{name}"

    @property
    def course_packages(self) -> str:
        """The lecturer's course packages file, kept so a rebuild installs the same list."""
        return f"{self.etc}/course-packages"

    @property
    def package_snapshots(self) -> str:
        """`pip list --format=freeze` before each course packages install, for rollback."""
        return f"{self.prefix}/state/packages"

    # -- who may read the monitoring stack (docs/security.md) --------------------
    @property
    def exporter_token(self) -> str:
        """The exporter's bearer token: Prometheus, the exporter and the status page."""
        return f"{self.etc}/exporter-token"

    @property
    def culler_token(self) -> str:
        """The idle-GPU culler's token at the exporter: it reads /api/idle and reports culls,
        nothing else (root only: the exporter gets a copy from systemd, the culler from the
        hub)."""
        return f"{self.etc}/exporter-culler-token"

    @property
    def grafana_oauth_secret(self) -> str:
        """Grafana's client secret at the hub (the grafana service's token)."""
        return f"{self.etc}/grafana-oauth-secret"

    @property
    def monitoring_auth(self) -> str:
        """Basic-auth passwords and web-config files of Prometheus, Alertmanager, node_exporter."""
        return f"{self.etc}/monitoring"

    def password(self, user: str) -> str:
        """The clear password of one monitoring user (prometheus, grafana, instructor)."""
        return f"{self.monitoring_auth}/{user}.password"

    def web_config(self, daemon: str) -> str:
        """A daemon's --web.config.file: bcrypt hashes of its users' passwords."""
        return f"{self.monitoring_auth}/{daemon}-web.yml"

    @property
    def instructor_netrc(self) -> str:
        return f"{self.monitoring_auth}/instructor.netrc"

    @property
    def instructor_http_config(self) -> str:
        """For amtool and promtool --http.config.file."""
        return f"{self.monitoring_auth}/instructor-http.yml"

    # -- TLJH --------------------------------------------------------------------
    @property
    def hub_env(self) -> str:
        return f"{self.tljh_prefix}/hub"

    @property
    def user_env(self) -> str:
        return f"{self.tljh_prefix}/user"

    @property
    def pytorch_constraints(self) -> str:
        """pip constraints: PyTorch exactly as the installer chose it. In the environment, which
        every student reads: their own `pip install --user` reads these pins too."""
        return f"{self.user_env}/pytorch-constraints.txt"

    @property
    def user_pip_conf(self) -> str:
        """pip's "site" configuration of the users' environment (sys.prefix/pip.conf)."""
        return f"{self.user_env}/pip.conf"

    @property
    def user_conda_pinned(self) -> str:
        """conda's pins of the users' environment, read by conda and mamba."""
        return f"{self.user_env}/conda-meta/pinned"

    @property
    def tljh_password_store(self) -> str:
        """FirstUseAuthenticator's passwords.dbm, in the hub's working directory."""
        return f"{self.tljh_prefix}/state/passwords.dbm"

    @property
    def labextension(self) -> str:
        """dlcourse's prebuilt JupyterLab extension in the users' environment."""
        return f"{self.user_env}/share/jupyter/labextensions/@dlcourse/jupyterlab-gpu"

    @property
    def user_jupyter_config_d(self) -> str:
        """Jupyter server settings for every user (sys.prefix/etc/jupyter of their Python)."""
        return f"{self.user_env}/etc/jupyter/jupyter_server_config.d"

    @property
    def tljh_config_dir(self) -> str:
        return f"{self.tljh_prefix}/config"

    @property
    def user_ipython_config_dir(self) -> str:
        """IPython settings for every kernel of the users' environment (sys.prefix/etc/ipython)."""
        return f"{self.user_env}/etc/ipython"

    @property
    def tljh_config_yaml(self) -> str:
        return f"{self.tljh_config_dir}/config.yaml"

    @property
    def tljh_config_d(self) -> str:
        return f"{self.tljh_config_dir}/jupyterhub_config.d"

    @property
    def tljh_config_cmd(self) -> str:
        return f"{self.hub_env}/bin/tljh-config"

    # -- the system --------------------------------------------------------------
    systemd_dir: str = "/etc/systemd/system"
    modprobe_blacklist: str = "/etc/modprobe.d/blacklist-nouveau.conf"
    prometheus_config: str = "/etc/prometheus/prometheus.yml"
    prometheus_rules_dir: str = "/etc/prometheus/dlcourse"
    prometheus_data: str = "/var/lib/prometheus/metrics2"
    alertmanager_config: str = "/etc/prometheus/alertmanager.yml"
    alertmanager_data: str = "/var/lib/prometheus/alertmanager"
    # Where Debian's and Ubuntu's amtool looks (`amtool --help`, prometheus-alertmanager 0.25).
    amtool_config: str = "/etc/prometheus/amtool.yml"
    grafana_ini: str = "/etc/grafana/grafana.ini"
    grafana_provisioning: str = "/etc/grafana/provisioning"
    # Where grafana/provisioning/dashboards/dlcourse.yml looks, as in docker-compose.yml.
    grafana_dashboards_dir: str = "/etc/grafana/dashboards/dlcourse"
    apt_keyrings: str = "/etc/apt/keyrings"
    apt_sources_d: str = "/etc/apt/sources.list.d"
    apt_conf_d: str = "/etc/apt/apt.conf.d"
    etc_default: str = "/etc/default"
    # The NVIDIA driver's /proc files: which /dev/nvidiaN is which GPU (nvidia_devices.py).
    nvidia_driver_proc: str = "/proc/driver/nvidia"

    def unit(self, name: str) -> str:
        return f"{self.systemd_dir}/{name}"

    def default_file(self, package: str) -> str:
        """Ubuntu's /etc/default/<name>: where its units read their ARGS."""
        return f"{self.etc_default}/{package}"
