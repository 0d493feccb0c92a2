"""docker-compose.yml, the exporter's Dockerfile and Grafana's provisioning, checked statically.

No Docker engine runs on CI: the compose file is validated against the Compose
Specification schema (the copy check-jsonschema ships), and every cross-reference between
the files (mounted paths, secrets, ports, the exporter's settings) is checked by hand. Where
each service listens and what it dials: tests/security/test_compose_access.py.
"""

from __future__ import annotations

import configparser
import copy
import fnmatch
import importlib.resources
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
# Host paths outside the repository a service may mount, and why.
HOST_PATHS = {
    "/": "node_exporter reads the host's filesystems under --path.rootfs",
    "/etc/passwd": "the exporter names process owners by their host accounts",
}


def compose_schema() -> dict:
    path = (
        importlib.resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    )
    return json.loads(path.read_text(encoding="utf-8"))


def schema_errors(document: dict) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of the service's volumes that are bind mounts."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def test_compose_file_matches_the_compose_specification() -> None:
    assert schema_errors(COMPOSE) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["services"]["grafana"].update(portz=["3000:3000"]),
        lambda c: c["services"]["exporter"]["deploy"]["resources"]["reservations"].update(
            devices="nvidia"
        ),
        lambda c: c["services"]["prometheus"]["healthcheck"].update(interval=30),
    ],
)
def test_schema_validation_catches_mistakes(mutate) -> None:
    broken = copy.deepcopy(COMPOSE)
    mutate(broken)
    assert schema_errors(broken)


def test_every_bind_mounted_path_exists() -> None:
    for name, service in SERVICES.items():
        for source, _ in bind_mounts(service):
            if source.startswith("/"):
                assert source in HOST_PATHS, f"{name} mounts host path {source}"
            else:
                assert (REPO / source).exists(), f"{name} mounts {source}, missing in the repo"
    build = SERVICES["exporter"]["build"]
    assert (REPO / build["context"] / build["dockerfile"]).is_file()


def test_named_volumes_are_declared() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if not source.startswith((".", "/")):
                assert source in COMPOSE["volumes"], f"{name} uses undeclared volume {source}"


def test_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image else ""
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned"
    base = re.search(r"^FROM (\S+)", (REPO / "Dockerfile").read_text(), re.M).group(1)
    assert re.search(r":\d+\.\d+\.\d+-slim", base), f"Dockerfile base {base} is not pinned"


def test_the_dockerfile_copies_every_package_folder_its_wheel_needs() -> None:
    """Its `pip install .` builds the wheel pyproject.toml describes, and setuptools needs the
    folder of every package listed there (old behaviour: only exporter/ and secretfile/ were
    copied, and the build stopped at "package directory 'installer' does not exist").
    Checked statically: no Docker engine runs here, the image was never built."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    tops = {package.split(".")[0] for package in setuptools["packages"]}
    folders = {setuptools["package-dir"].get(top, top) for top in tops}
    lines = (REPO / "Dockerfile").read_text().splitlines()
    build = next(i for i, line in enumerate(lines) if re.match(r"RUN pip install .* \.( |$)", line))
    copied = {
        source.rstrip("/")
        for line in lines[:build]
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    }
    assert folders <= copied, f"the Dockerfile does not copy {sorted(folders - copied)}"
    # .dockerignore keeps the rest of the checkout out of the build context; the last pattern
    # that matches a path decides (Docker's documentation, ".dockerignore file").
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in sorted(folders | {"pyproject.toml"}):
        admitted = True
        for pattern in patterns:
            if fnmatch.fnmatch(path, pattern.removeprefix("!").rstrip("/")):
                admitted = pattern.startswith("!")
        assert admitted, f".dockerignore leaves {path} out of the build context"


def test_every_service_has_a_health_check() -> None:
    for name, service in SERVICES.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


@pytest.mark.live
def test_secrets_come_from_ignored_files() -> None:
    for name, secret in COMPOSE["secrets"].items():
        path = secret["file"]
        assert path.startswith("./secrets/"), f"secret {name} at {path}"
        if (REPO / ".git").exists():
            ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", path])
            assert ignored.returncode == 0, f"{path} is not git-ignored"
    used = {
        (s if isinstance(s, str) else s["source"])
        for service in SERVICES.values()
        for s in service.get("secrets", [])
    }
    assert used == set(COMPOSE["secrets"])


@pytest.mark.live
def test_exporter_service(tmp_path) -> None:
    exporter = SERVICES["exporter"]
    assert exporter["pid"] == "host"
    (device,) = exporter["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "host.docker.internal:host-gateway" in exporter["extra_hosts"]
    assert exporter["ports"] == ["127.0.0.1:945:9945"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert '"--web.listen-address=0.0.0.0:9945"' in dockerfile
    assert re.search(r"pip install .*\.\s*\\?$", dockerfile, re.M)
    # The settings the compose file passes are ones the exporter knows and accepts.
    token = tmp_path / "hub_api_token"
    token.write_text("secret-token\n")
    env = {key: str(value) for key, value in exporter["environment"].items()}
    assert env["DLCOURSE_HUB_TOKEN_FILE"] == "/run/secrets/hub_api_token"
    env["DLCOURSE_HUB_TOKEN_FILE"] = str(token)
    assert env["DLCOURSE_WEB_TOKEN_FILE"] == "/run/secrets/exporter_token"
    env["DLCOURSE_WEB_TOKEN_FILE"] = str(token)
    result = subprocess.run(
        [sys.executable, "-m", "dlcourse_exporter", "--check-config",
         "--web.listen-address=0.0.0.0:9945"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "listening on 0.0.0.0:9945" in result.stdout
    assert "hub http://host.docker.internal/hub/api" in result.stdout
    assert "secret-token" not in result.stdout + result.stderr


def test_grafana_provisioning() -> None:
    grafana = SERVICES["grafana"]
    mounts = dict(bind_mounts(grafana))
    provider = yaml.safe_load((REPO / "grafana/provisioning/dashboards/dlcourse.yml").read_text())[
        "providers"
    ]
    assert len(provider) == 1 and provider[0]["folder"]
    assert mounts["./grafana/dashboards"] == provider[0]["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"

    ini = configparser.ConfigParser(interpolation=None)
    ini.read(REPO / "grafana" / "grafana.ini")
    assert ini["auth.anonymous"]["enabled"] == "false"
    assert ini["users"]["allow_sign_up"] == "false"
    password = ini["security"]["admin_password"]
    secret = re.fullmatch(r"\$__file\{/run/secrets/(\w+)\}", password)
    assert secret, f"admin_password must come from a secret file, not {password!r}"
    assert secret.group(1) in grafana["secrets"]
    assert mounts["./grafana/grafana.ini"] == "/etc/grafana/grafana.ini"


def test_datasource_time_interval_is_the_scrape_interval() -> None:
    datasources = yaml.safe_load(
        (REPO / "grafana/provisioning/datasources/dlcourse.yml").read_text()
    )["datasources"]
    (prom,) = [d for d in datasources if d["type"] == "prometheus"]
    assert prom["url"] == "http://prometheus:9090"
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    assert prom["jsonData"]["timeInterval"] == config["global"]["scrape_interval"]


def test_prometheus_service_uses_the_repo_config() -> None:
    prometheus = SERVICES["prometheus"]
    mounts = dict(bind_mounts(prometheus))
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    (hub,) = [job for job in config["scrape_configs"] if job["job_name"] == "jupyterhub"]
    targets = {s["target"] for s in prometheus["secrets"] if isinstance(s, dict)}
    assert hub["authorization"]["credentials_file"] in targets
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"dlcourse", "jupyterhub", "node"} <= jobs  # the dashboards' job names
