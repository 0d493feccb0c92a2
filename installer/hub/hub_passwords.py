"""Pre-set hub passwords in TLJH's first-use password store, before anyone can claim an account.

TLJH's default authenticator (FirstUseAuthenticator) lets whoever logs in first with a name
set its password. The installer therefore generates a password for each account it must
protect (the admins) into a root-only file, ``<etc>/hub-passwords/<name>``, and this module
writes its bcrypt hash into the store the authenticator reads, exactly as it does itself
(firstuseauthenticator.py: ``dbm.open(dbm_path, 'c', 0o600)``, ``db[name] =
bcrypt.hashpw(password, bcrypt.gensalt())``); TLJH keeps the store at
``<prefix>/state/passwords.dbm`` (the hub's working directory, tljh/systemd-units/
jupyterhub.service; TLJH 2.0.0).

It runs in TLJH's hub environment, which has bcrypt (a TLJH dependency) and the same Python,
hence the same dbm backend, as the hub: from the plugin hook ``tljh_config_post_install``,
which TLJH's installer calls before it starts the hub for the first time
(tljh/installer.py main(): ensure_config_yaml, then ensure_admins, then
ensure_jupyterhub_service), and by ``python3 -m dlcourse_installer.hub.hub_passwords`` when TLJH
was installed before dlcourse. An entry already in the store is never changed: the person
may have changed their password since.

    python3 -m dlcourse_installer.hub.hub_passwords PASSWORDS_DIR STORE [--missing]
"""

from __future__ import annotations

import dbm
import os
import sys


def wanted(passwords_dir: str) -> dict[str, str]:
    """Account name -> password, one root-only file per account."""
    if not os.path.isdir(passwords_dir):
        return {}
    out = {}
    for name in sorted(os.listdir(passwords_dir)):
        with open(os.path.join(passwords_dir, name), encoding="utf-8") as f:
            out[name] = f.read().strip()
    return out


def missing(passwords_dir: str, store: str) -> list[str]:
    names = wanted(passwords_dir)
    if not names:
        return []
    try:
        with dbm.open(store, "r") as db:
            return [n for n in names if n.encode() not in db]
    except dbm.error:  # no store yet
        return list(names)


def seed(passwords_dir: str, store: str) -> list[str]:
    """Add the accounts that have no password in the store yet; return their names."""
    import bcrypt  # TLJH's hub environment has it; the installer's own venv need not

    todo = missing(passwords_dir, store)
    if not todo:
        return []
    os.makedirs(os.path.dirname(store), mode=0o700, exist_ok=True)
    passwords = wanted(passwords_dir)
    with dbm.open(store, "c", 0o600) as db:
        for name in todo:
            db[name] = bcrypt.hashpw(passwords[name].encode(), bcrypt.gensalt())
    return todo


def main(argv: list[str]) -> int:
    passwords_dir, store, *flags = argv
    if flags == ["--missing"]:
        print("\n".join(missing(passwords_dir, store)))
        return 0
    for name in seed(passwords_dir, store):
        print(f"password of hub account {name!r} set from {passwords_dir}/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
