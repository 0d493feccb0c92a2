"""Runs TLJH's own code in TLJH's venv (tests/tljh_env.py) and prints what it saw as JSON.

    TLJH_INSTALL_PREFIX=DIR DLCOURSE_ETC=DIR python testing/tljh_probe.py COMMAND [ARG...]

- ``plugins``: what TLJH's plugin loading finds (``tljh.installer.setup_plugins``, the
  installer's; ``tljh.utils.get_plugin_manager``, the hub configuration's), and the hooks
  each plugin implements. ``unknown_hooks`` is pluggy's check that every hook a plugin
  implements is one of TLJH's (tljh/hooks.py); TLJH itself never runs that check, so a
  misspelt hook would be silently skipped on a real server.
- ``install ADMIN...``: the steps of TLJH's installer that write its configuration, in its
  order (tljh/installer.py ``main``): plugins, ``ensure_config_yaml`` (which calls the
  plugins' ``tljh_config_post_install``), ``ensure_admins`` (as ``--admin ADMIN``). The
  steps after them install packages and start systemd units; the installer's own tests
  cover what dlcourse does there.
- ``plugin-actions``: ``run_plugin_actions``, as the installer's last step, with
  ``$TLJH_INSTALL_PREFIX/user`` as the users' environment.
- ``validate``: ``config.yaml`` checked against TLJH's schema (tljh/config_schema.py), as
  ``tljh-config`` checks each change; the errors, if any.
- ``accounts NAME...``: the Linux account TLJH's spawner creates for each hub user
  (tljh/user_creating_spawner.py: ``generate_system_username("jupyter-" + name)``).

TLJH reads TLJH_INSTALL_PREFIX when its modules are imported, hence one process per probe.
"""

from __future__ import annotations

import json
import sys


def plugins() -> dict:
    import pluggy
    from tljh import installer, utils

    found = {}
    for name, manager in (
        ("setup_plugins", installer.setup_plugins()),
        ("get_plugin_manager", utils.get_plugin_manager()),
    ):
        try:
            manager.check_pending()
            unknown = None
        except pluggy.PluginValidationError as exc:
            unknown = str(exc)
        found[name] = {
            "plugins": {
                plugin_name: getattr(plugin, "__name__", repr(plugin))
                for plugin_name, plugin in manager.list_name_plugin()
            },
            "hooks": {
                plugin_name: sorted(caller.name for caller in manager.get_hookcallers(plugin))
                for plugin_name, plugin in manager.list_name_plugin()
            },
            "unknown_hooks": unknown,
        }
    return found


def install(admins: list[str]) -> dict:
    from tljh import installer

    manager = installer.setup_plugins()
    installer.ensure_config_yaml(manager)
    installer.ensure_admins([admins])  # argparse's shape for `--admin A B`
    return {"done": True}


def plugin_actions() -> dict:
    from tljh import installer

    installer.run_plugin_actions(installer.setup_plugins())
    return {"done": True}


def validate() -> dict:
    import jsonschema
    from tljh.config import CONFIG_FILE, get_current_config
    from tljh.config_schema import config_schema

    validator = jsonschema.validators.validator_for(config_schema)(config_schema)
    return {"errors": [e.message for e in validator.iter_errors(get_current_config(CONFIG_FILE))]}


def accounts(names: list[str]) -> dict:
    from tljh.normalize import generate_system_username

    return {name: generate_system_username("jupyter-" + name) for name in names}


COMMANDS = {
    "plugins": lambda args: plugins(),
    "install": install,
    "plugin-actions": lambda args: plugin_actions(),
    "validate": lambda args: validate(),
    "accounts": accounts,
}

if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    print(json.dumps(COMMANDS[command](arguments)))
