"""The exporter tells a student by the Linux account TLJH made for them: it must name those
accounts exactly as TLJH's own ``tljh.normalize.generate_system_username`` does."""

import uuid

from dlcourse_exporter.sources.owners import Attribution, Evidence, Policy, attribute
from dlcourse_exporter.sources.roster import Roster, system_account
from dlcourse_testing.tljh_hub import probe

PREFIX = "jupyter-"  # TLJH's (tljh/user_creating_spawner.py), the exporter's default
# Short, the last length TLJH keeps whole (17: with "jupyter-", 25 characters), the first it
# cuts (18), and the 25-, 26- and 40-character names of the issue.
LENGTHS = (9, 17, 18, 25, 26, 40)


def hub_names() -> list[str]:
    return [f"dlct{uuid.uuid4().hex}{uuid.uuid4().hex}"[:n] for n in LENGTHS]


def test_the_exporter_names_accounts_as_tljh_does(tljh_python, tmp_path):
    names = hub_names()
    tljh = probe("accounts", *names, prefix=tmp_path)
    for name in names:
        assert system_account(name, PREFIX) == tljh[name], name
    assert [len(tljh[n]) for n in names] == [17, 25, 32, 32, 32, 32]  # useradd's 32, at most


def test_each_tljh_account_is_its_student_with_the_hubs_users(tljh_python, tmp_path):
    """With a hub (as the installer sets up), the account of every length maps back."""
    names = hub_names()
    accounts = probe("accounts", *names, prefix=tmp_path)
    roster = Roster.of([(n, n) for n in names], PREFIX)
    for name, account in accounts.items():
        found = attribute(Evidence(account=account), Policy(PREFIX, hub=True), roster)
        assert found == Attribution(name, "account")
