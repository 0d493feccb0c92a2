"""Walks the checklist: progress and elapsed time, state after every step, resume, reboot."""

from __future__ import annotations

import sys
import time

from dlcourse_installer import generated, systemd, templates
from dlcourse_installer.host import CommandError
from dlcourse_installer.steps import (
    STEPS,
    Context,
    PreflightFailed,
    RebootRequired,
    Step,
    StepError,
    ensure_part,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_REBOOT = 3  # the install stopped for the driver's reboot; rerun (or wait) after it


def elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def run(ctx: Context, steps: list[Step] = STEPS) -> int:
    out, host, opts = ctx.out, ctx.host, ctx.opts
    started = time.monotonic()
    refused: PreflightFailed | None = None
    for number, step in enumerate(steps, start=1):
        label = f"[{number}/{len(steps)}] {step.title}"
        inputs = {**step.inputs(opts), "files": generated.digest(ctx.files, step.parts)}
        if not step.always and not opts.recheck and ctx.state.is_done(step.name, inputs):
            out.write(f"{label} ... done in an earlier run\n")
            continue
        out.write(f"{label} ...\n")
        out.flush()
        t0, before = time.monotonic(), len(host.actions)
        try:
            step.ensure(ctx)
        except PreflightFailed as exc:
            if not opts.dry_run:
                out.write(f"\ndlcourse-install: {exc}\nNothing was changed.\n")
                return EXIT_REFUSED
            refused = exc
            out.write("      refused, for these reasons:\n")
            out.write("".join(f"        - {e}\n" for e in exc.errors))
            out.write("      (dry run: the plan goes on to show what this machine would get)\n")
        except RebootRequired as exc:
            if opts.dry_run:
                out.write(f"      -- reboot here ({exc}); the install resumes after it --\n")
                continue
            return _stop_for_reboot(ctx, str(exc))
        except (StepError, CommandError) as exc:
            _save(ctx)
            out.write(
                f"\ndlcourse-install: step '{step.title}' failed: {exc}\n"
                f"Full command output: {ctx.paths.log_file}\n"
                "Fix the cause and run the same command again: finished steps are kept.\n"
            )
            return EXIT_FAILED
        if step.name == "preflight" and not opts.dry_run and not _confirmed(ctx):
            out.write("Nothing was changed.\n")
            return EXIT_REFUSED
        changes = len(host.actions) - before
        what = "nothing to change" if changes == 0 else f"{changes} change(s)"
        if opts.dry_run and changes:
            what = f"{changes} planned change(s)"
        out.write(f"      ok: {what} ({elapsed(time.monotonic() - t0)})\n")
        if refused is None and not step.always:
            ctx.state.mark_done(step.name, inputs)
            _save(ctx)

    total = elapsed(time.monotonic() - started)
    if refused is not None:
        out.write(f"\nDry run, nothing was changed; {refused}\n")
        return EXIT_REFUSED
    if opts.dry_run:
        out.write(f"\nDry run: nothing was changed ({total}). Run without --dry-run to install.\n")
        return EXIT_OK
    out.write(f"\nDone in {total}.\n")
    for line in ctx.summary:
        out.write(f"  {line}\n")
    return EXIT_OK


def _confirmed(ctx: Context) -> bool:
    if ctx.opts.yes:
        return True
    if not sys.stdin.isatty():
        ctx.out.write("dlcourse-install: not a terminal; pass --yes to install unattended.\n")
        return False
    answer = input("Install dlcourse on this server, as listed above and in --dry-run? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _save(ctx: Context) -> None:
    if not ctx.opts.dry_run:
        ctx.state.save(ctx.host, ctx.paths)


def _stop_for_reboot(ctx: Context, reason: str) -> int:
    out, host = ctx.out, ctx.host
    if ctx.opts.reboot:
        # Resume by itself: a one-shot unit runs `dlcourse-install resume` at the next boot.
        unit = templates.RESUME_UNIT
        if ensure_part(ctx, "resume"):
            systemd.reload_daemon(host)
        if not systemd.is_enabled(host, unit):
            host.run(["systemctl", "enable", unit])
    _save(ctx)
    out.write(f"\n{reason}.\n")
    if ctx.opts.reboot:
        out.write(
            "Rebooting now; the installation resumes by itself after the boot "
            f"(follow it with `journalctl -fu {templates.RESUME_UNIT}`).\n"
        )
        systemd.reboot(host)
    else:
        out.write(
            "Reboot the server (`sudo reboot`), then run the same command again: "
            "it resumes where it stopped.\n"
        )
    return EXIT_REBOOT
