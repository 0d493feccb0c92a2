"""TLJH's own tljh/jupyterhub_config.py runs a real JupyterHub 5 with the jupyterhub_config.d
files dlcourse-install writes (testing/tljh_hub.py): through the hub's API, dlcourse's services,
roles and scopes are those docs/hub.md promises, TLJH's idle culler still runs, the admin's
pre-set password works, and a student's server gets what the plugin and tljh-config set."""

import re
import time
import uuid
from pathlib import Path

import httpx
import pytest

from dlcourse_exporter.sources.owners import Attribution, Owners, account_name
from dlcourse_exporter.sources.proctable import read_identity
from dlcourse_exporter.sources.roster import SharedRoster
from dlcourse_testing.hub import HubError
from dlcourse_testing.tljh_hub import write_roster

DOCS = Path(__file__).resolve().parents[2] / "docs" / "hub.md"
MEM_LIMIT = "1.5G"


def docs_exporter_scopes() -> set[str]:
    """The scope table of docs/hub.md ("What the exporter may do")."""
    section = DOCS.read_text().split("## What the exporter may do", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z:]+)` \|", section, re.MULTILINE))


@pytest.fixture(scope="module")
def course(make_tljh_hub, tmp_path_factory):
    roster, people = write_roster(tmp_path_factory.mktemp("roster"))
    hub = make_tljh_hub(
        "--roster", str(roster), "--mem-limit", MEM_LIMIT, "--cpu-limit", "2", "--gpu-idle-cull"
    )  # fmt: skip
    return hub, people


def as_service(hub, service_token_file: str) -> httpx.Client:
    token = hub.site.read(service_token_file).strip()
    return httpx.Client(base_url=hub.api_url, headers={"Authorization": f"token {token}"})


def test_dlcourse_services_join_tljhs_and_its_idle_culler_still_runs(course):
    hub, _ = course
    services = hub.api("GET", "/services").json()
    assert set(services) == {
        "cull-idle",  # TLJH's (tljh/configurer.py set_cull_idle_service)
        "dlcourse-exporter", "dlcourse-prometheus", "dlcourse-status", "grafana",
        "test-driver",
        "my-gpu",  # each student's own page (installer/rendered/students.py)
        "dlcourse-gpu-culler",  # started because tljh-config set dlcourse.gpu_idle_cull true
    }  # fmt: skip
    culler = services["cull-idle"]
    assert culler["command"][1:3] == ["-m", "jupyterhub_idle_culler"] and culler["pid"] > 0
    assert services["dlcourse-exporter"]["roles"] == ["dlcourse-exporter"]
    assert services["dlcourse-prometheus"]["roles"] == ["dlcourse-prometheus"]
    assert services["dlcourse-gpu-culler"]["roles"] == ["dlcourse-gpu-culler"]
    assert services["dlcourse-gpu-culler"]["pid"] > 0
    # Started by the hub with TLJH's Python, behind TLJH's hub login.
    for name in ("dlcourse-status", "my-gpu"):
        assert services[name]["pid"] > 0
        page = httpx.get(hub.public_url + f"/services/{name}/")
        assert page.status_code == 302 and "/hub/api/oauth2/authorize" in page.headers["location"]
    # The culler culls at start: its first call to the hub is answered.
    deadline = time.monotonic() + 60
    while not re.search(r"200 GET /hub/api/users\S* \(cull-idle@", hub.log_tail(400)):
        assert time.monotonic() < deadline, hub.log_tail()
        time.sleep(0.5)


def test_the_exporter_token_holds_the_scopes_of_docs_hub_md_and_no_more(course):
    hub, people = course
    with as_service(hub, "/etc/dlcourse/hub-token") as exporter:
        me = exporter.get("/user").json()
        assert (me["name"], set(me["scopes"])) == ("dlcourse-exporter", docs_exporter_scopes())
        listed = exporter.get("/users").json()
        assert {u["name"] for u in listed} >= set(people)
        assert all("groups" in u and "servers" in u for u in listed)
        refused = [
            exporter.post(f"/users/dlct-{uuid.uuid4().hex[:8]}"),
            exporter.post(f"/users/{people[0]}/server"),
            exporter.get("/services"),
            exporter.get(f"/users/{people[0]}/tokens"),
            exporter.get(hub.public_url + "/hub/metrics"),
        ]
        assert [r.status_code for r in refused] == [403] * len(refused)


def test_prometheus_reads_the_hubs_metrics_and_nothing_else(course):
    hub, _ = course
    with as_service(hub, "/etc/dlcourse/prometheus-hub-token") as prometheus:
        assert set(prometheus.get("/user").json()["scopes"]) == {"read:metrics"}
        assert prometheus.get(hub.public_url + "/hub/metrics").status_code == 200
        assert prometheus.get("/users").status_code == 403
    assert httpx.get(hub.public_url + "/hub/metrics").status_code == 403


def test_the_roster_makes_sections_and_the_tas_staff(course):
    hub, people = course
    *students, ta = people
    groups = {g["name"]: g for g in hub.api("GET", "/groups").json()}
    assert groups["section-a"]["users"] == students[:2]
    assert groups["section-b"]["users"] == students[2:]
    assert groups["instructors"]["users"] == [ta]
    assert groups["instructors"]["roles"] == ["dlcourse-staff"]


def test_the_admin_signs_in_with_the_password_the_installer_generated(course):
    """TLJH's FirstUseAuthenticator reads the store that dlcourse's plugin hook filled."""
    hub, _ = course
    with hub.login(hub.admin, hub.admin_password()) as browser:
        assert browser.get("/hub/api/user").json()["admin"] is True
    with pytest.raises(HubError, match="refused"), hub.login(hub.admin, "a guess"):
        pass


def server_process(hub, name: str) -> int:
    return hub.start_server(name)["state"]["pid"]


def environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode().split("=", 1) for e in entries if b"=" in e)


def evidence(pid: int):
    """What the exporter's one walk of /proc knows of the process."""
    return read_identity(Path("/proc"), pid, "jupyter-").evidence


def test_a_students_server_runs_as_tljhs_account_with_the_plugins_settings(course):
    hub, _ = course
    student = hub.add_user()
    pid = server_process(hub, student)
    uid = Path(f"/proc/{pid}").stat().st_uid
    assert account_name(uid) == hub.account(student) == f"jupyter-{student}"
    env = environ(pid)
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # tljh_custom_jupyterhub_config
    assert env["MEM_LIMIT"] == str(int(1.5 * 1024**3))  # tljh-config set limits.memory
    assert float(env["CPU_LIMIT"]) == 2
    assert Owners().judge(evidence(pid)).user == student


def test_a_long_hub_names_server_is_told_by_the_exporter(course):
    """40 characters: TLJH cuts the account to 32 with a hash; the exporter, knowing the
    hub's users as it does once its hub collector has polled, maps it back."""
    hub, _ = course
    student = f"dlct-{uuid.uuid4().hex}"[:40]
    hub.add_user(student)
    pid = server_process(hub, student)
    account = account_name(Path(f"/proc/{pid}").stat().st_uid)
    assert account == hub.account(student) and len(account) == 32
    roster = SharedRoster(hub_configured=True)
    roster.update((u["name"], u["name"]) for u in hub.api("GET", "/users").json())
    assert Owners(roster=roster).judge(evidence(pid)) == Attribution(student, "account")
