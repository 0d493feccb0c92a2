"""Pre-set hub passwords, checked by TLJH's real authenticator (FirstUseAuthenticator)."""

import asyncio
import os
import stat
import subprocess
import sys

import pytest
from firstuseauthenticator import FirstUseAuthenticator

from dlcourse_installer.hub import hub_passwords


@pytest.fixture
def store(tmp_path):
    passwords = tmp_path / "hub-passwords"
    passwords.mkdir(mode=0o700)
    (passwords / "teacher").write_text("first-generated-secret\n")
    return str(passwords), str(tmp_path / "state" / "passwords.dbm")


def _login(store_path: str, name: str, password: str):
    # TLJH's settings: only existing hub users may log in (create_users False is checked
    # against the hub's database, which the admin is in); here the store alone decides.
    auth = FirstUseAuthenticator(dbm_path=store_path)
    return asyncio.run(auth.authenticate(None, {"username": name, "password": password}))


def test_the_generated_password_is_the_admins_and_nobody_can_claim_the_account(store):
    passwords_dir, store_path = store
    assert hub_passwords.missing(passwords_dir, store_path) == ["teacher"]
    assert hub_passwords.seed(passwords_dir, store_path) == ["teacher"]
    assert _login(store_path, "teacher", "first-generated-secret") == "teacher"
    # Whoever comes first with another password does not get the account.
    assert _login(store_path, "teacher", "a-claimers-password") is None
    assert hub_passwords.missing(passwords_dir, store_path) == []
    state = os.path.dirname(store_path)
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    for name in os.listdir(state):  # the dbm backend picks the file names
        assert stat.S_IMODE(os.stat(os.path.join(state, name)).st_mode) == 0o600


def test_a_password_changed_since_is_kept(store):
    passwords_dir, store_path = store
    hub_passwords.seed(passwords_dir, store_path)
    FirstUseAuthenticator(dbm_path=store_path).reset_password("teacher", "changed-by-the-lecturer")
    assert hub_passwords.seed(passwords_dir, store_path) == []
    assert _login(store_path, "teacher", "changed-by-the-lecturer") == "teacher"


@pytest.mark.live
def test_command_line_lists_and_seeds(store):
    passwords_dir, store_path = store
    cmd = [sys.executable, "-m", "dlcourse_installer.hub.hub_passwords", passwords_dir, store_path]
    missing = subprocess.run([*cmd, "--missing"], capture_output=True, text=True, check=True)
    assert missing.stdout.split() == ["teacher"]
    seeded = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "first-generated-secret" not in seeded.stdout + seeded.stderr
    assert f"{passwords_dir}/teacher" in seeded.stdout
