"""dlcourse itself in a Python environment: the exporter's venv and TLJH's hub environment
(which imports the plugin and the GPU hook). The state records which ``--source`` gave each
environment which release, so a rerun installs a changed source and nothing else."""

from __future__ import annotations

from dataclasses import asdict

from dlcourse_installer.checklist.step import Context
from dlcourse_installer.machine import releases


def ensure_dlcourse(ctx: Context, where: str, prefix: str, python: str) -> bool:
    """dlcourse from --source in the Python environment at prefix (the exporter's, the hub's),
    unless the state says it holds that source already; True if this installed it."""
    host, spec = ctx.host, ctx.opts.source.spec
    before = releases.installed(host, prefix, "dlcourse")
    if before is not None and ctx.state.installed.get(where) == holding(ctx, before):
        return False
    host.run(releases.pip_install(python, spec, upgrade=before is not None))
    same = releases.installed(host, prefix, "dlcourse") == before
    if before is not None and same and not ctx.opts.dry_run:
        host.run(releases.pip_reinstall(python, spec))
    record_dlcourse(ctx, where, prefix)
    return True


def record_dlcourse(ctx: Context, where: str, prefix: str) -> None:
    ctx.state.installed[where] = holding(ctx, releases.installed(ctx.host, prefix, "dlcourse"))


def holding(ctx: Context, release: dict | None) -> dict:
    """What the state records of an environment: the source, and the release it gave."""
    return {"source": asdict(ctx.opts.source), "release": release}
