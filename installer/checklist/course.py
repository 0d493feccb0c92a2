"""Step 7: the course on the hub: its admins, the roster's people and sections, the limits
of each server, and the GPU policy the hook reads (docs/gpu-assignment.md)."""

from __future__ import annotations

from dlcourse_installer.checklist.step import Context, Step, ensure_part, restart_hub
from dlcourse_installer.machine import tljh


def ensure_course(ctx: Context) -> None:
    host, paths, opts = ctx.host, ctx.paths, ctx.opts
    cfg = tljh.config(host, paths)
    changed = False
    for key, names in (
        ("users.admin", opts.admins),
        ("users.allowed", [student.username for student in opts.roster]),
    ):
        present = set(tljh.lookup(cfg, key) or [])
        for name in names:
            if name not in present:
                tljh.config_add_item(host, paths, key, name)
                changed = True
    strict = None if opts.gpu_strict is None else str(opts.gpu_strict).lower()
    cull = None if opts.gpu_idle_cull is None else str(opts.gpu_idle_cull).lower()
    for key, value in (
        ("limits.memory", opts.mem_limit),
        ("limits.cpu", opts.cpu_limit),
        # The GPU hook reads these at each hub start (docs/gpu-assignment.md).
        ("dlcourse.gpu_policy", opts.gpu_policy),
        ("dlcourse.gpu_strict", strict),
        # The hub starts the GPU idle culler when this is true (rendered/students.py).
        ("dlcourse.gpu_idle_cull", cull),
    ):
        # str().lower(): config.yaml holds 2 and true where the options hold "2" and "true".
        if value is not None and str(tljh.lookup(cfg, key)).lower() != value.lower():
            tljh.config_set(host, paths, key, value)
            changed = True
    changed |= ensure_part(ctx, "course")
    if tljh.is_installed(host, paths) and tljh.passwords_missing(host, paths):
        tljh.seed_passwords(host, paths)  # before the hub loads the TAs from the roster
    sections = {student.group for student in opts.roster if student.group}
    if opts.roster:
        ctx.note(f"{len(opts.roster)} people in {len(sections)} sections")
    for ta in opts.tas:
        ctx.note(f"TA {ta} (group {opts.staff_group}): password in {paths.hub_password(ta)}")
    if changed:
        restart_hub(ctx)


STEP = Step("course", "Course: admins, roster, limits", ensure_course,
            ("admins", "roster", "staff_group", "mem_limit", "cpu_limit", "gpu_policy",
             "gpu_strict", "gpu_idle_cull"),
            parts=("course",))  # fmt: skip
