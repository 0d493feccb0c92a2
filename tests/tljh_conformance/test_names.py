"""The exporter tells a student by the Linux account TLJH made for them: it must name those
accounts exactly as TLJH's own ``tljh.normalize.generate_system_username`` does."""

import uuid

from tljh_hub import probe

from dlcourse_exporter.sources.owners import account_user, tljh_account

PREFIX = "jupyter-"  # TLJH's (tljh/user_creating_spawner.py), the exporter's default


def hub_name(length: int) -> str:
    name = f"dlct{uuid.uuid4().hex}{uuid.uuid4().hex}"
    return name[:length]


# Short, the last length TLJH keeps (17: "jupyter-" makes 25), the first it cuts (18), and
# the 25-, 26- and 40-character names the issue names.
LENGTHS = (9, 17, 18, 25, 26, 40)


def test_the_exporter_names_accounts_as_tljh_does(tljh_python, tmp_path):
    names = [hub_name(n) for n in LENGTHS]
    tljh = probe("accounts", *names, prefix=tmp_path)
    for name in names:
        assert tljh_account(name, PREFIX) == tljh[name], name


def test_each_account_maps_back_to_its_student_and_no_other(tljh_python, tmp_path):
    names = [hub_name(n) for n in LENGTHS]
    accounts = probe("accounts", *names, prefix=tmp_path)
    for name, account in accounts.items():
        assert account_user(account, PREFIX, hub_users=names) == name
        # Without the hub's list only a name TLJH kept whole can be told; a cut one is
        # never taken for the student its start suggests.
        assert account_user(account, PREFIX) == (name if account == PREFIX + name else None)
    cut = [a for a in accounts.values() if not a.endswith(tuple(names))]
    assert len(cut) == 4 and all(len(a) == 32 for a in cut)  # useradd's limit, just
