"""The hub reads its services' secrets when it loads dlcourse's jupyterhub_config.d files:
the status page's exporter token (handed to the service in its environment), the exporter's
and Prometheus's hub tokens, Grafana's client secret. A path that would hang or flood the
hub's start is one line naming the file, and the hub does not start, as for a missing file
(JupyterHub raises config file errors: jupyterhub 5 app.py, ``raise_config_file_errors``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from jupyterhub.app import JupyterHub

from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.layout.ports import Ports
from dlcourse_installer.rendered import staff, templates
from dlcourse_testing.secret_files import REASONS, finishes_within, hostile_secret_files

SECRETS = ("exporter-token", "hub-token", "prometheus-hub-token", "grafana-oauth-secret")


@pytest.fixture
def etc(tmp_path) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    for name in SECRETS:
        (etc / name).write_text(f"{name}-value\n")
    return etc


def load_snippets(etc: Path) -> JupyterHub:
    """dlcourse's two hub snippets as TLJH's jupyterhub_config.py loads them."""
    paths = Paths(etc=str(etc))
    staff_snippet = staff.hub_snippet(
        paths, Ports(), staff_group="instructors", grafana_proxied=True,
        grafana_redirect_uri="http://hub/services/grafana/login/generic_oauth",
    )  # fmt: skip
    snippets = {"services": templates.hub_services_snippet(paths), "staff": staff_snippet}
    main = ["c.JupyterHub.services = []\nc.JupyterHub.load_roles = []\n"]
    for name, text in snippets.items():
        (etc / f"dlcourse-{name}.py").write_text(text)
        main.append(f"load_subconfig({str(etc / f'dlcourse-{name}.py')!r})\n")
    (etc / "jupyterhub_config.py").write_text("".join(main))
    hub = JupyterHub()
    hub.load_config_file(str(etc / "jupyterhub_config.py"))
    return hub


def test_the_snippets_read_each_secret(etc):
    services = {s["name"]: s for s in load_snippets(etc).services}
    status = services[staff.STATUS_SERVICE]
    assert status["environment"]["DLCOURSE_EXPORTER_TOKEN"] == "exporter-token-value"
    assert services["dlcourse-exporter"]["api_token"] == "hub-token-value"
    assert services["grafana"]["api_token"] == "grafana-oauth-secret-value"


@pytest.mark.parametrize("what", sorted(REASONS))
@pytest.mark.parametrize("secret", SECRETS)
def test_a_secret_file_that_would_hang_or_flood_the_hub_is_one_line(etc, tmp_path, secret, what):
    (etc / secret).unlink()
    (etc / secret).symlink_to(hostile_secret_files(tmp_path / "hostile")[what])
    with pytest.raises(ValueError) as error:
        finishes_within(10, lambda: load_snippets(etc))
    assert str(error.value) == f"{etc / secret}: {REASONS[what]}"
