"""Walks the checklist: progress and elapsed time, state after every step, resume, reboot.

A step runs unless an earlier run finished it with the same inputs (``Step.inputs``: the
options it reads, the files it writes, the releases it installed); it sees only the options
it reads (``Options.only``), so it cannot depend on one that would not run it again.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from dlcourse_installer.checklist import STEPS, preflight
from dlcourse_installer.checklist.preflight import PreflightFailed
from dlcourse_installer.checklist.step import (
    Context,
    RebootRequired,
    Step,
    StepError,
    ensure_part,
)
from dlcourse_installer.checklist.summary import summary
from dlcourse_installer.machine import systemd
from dlcourse_installer.machine.host import CommandError
from dlcourse_installer.machine.progress import Progress, elapsed
from dlcourse_installer.rendered import templates

EXIT_OK = 0
EXIT_FAILED = 1  # a step failed; the message says why, the rerun resumes there
EXIT_BAD_OPTIONS = 2  # as argparse's own errors
EXIT_REFUSED = 3  # the preflight refuses this machine (a dry run: would refuse); nothing changed
EXIT_REBOOT = 4  # the install stopped for the driver's reboot; rerun (or wait) after it
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it


def run(
    ctx: Context, steps: list[Step] = STEPS, closing: Callable[[Context], list[str]] = summary
) -> int:
    """Walk ``steps``; ``closing`` says where everything is once they are done."""
    out, host, opts = ctx.out, ctx.host, ctx.options
    started = time.monotonic()
    refused = False
    host.progress = Progress(out)
    if opts.dry_run and steps[0].name == "preflight":
        # The reasons a machine would be refused come first, then the whole plan all the same.
        ctx.findings = preflight.check(host, opts, ctx.ports)
        if ctx.findings.errors:
            out.write("This machine would be refused, for these reasons:\n")
            out.write("".join(f"  - {e}\n" for e in ctx.findings.errors))
            out.write("The plan below is what an accepted machine would get.\n\n")
    for number, step in enumerate(steps, start=1):
        label = f"[{number}/{len(steps)}] {step.title}"
        done = (
            not step.always and not opts.recheck and ctx.state.is_done(step.name, step.inputs(ctx))
        )
        if done:
            out.write(f"{label} ... done in an earlier run\n")
            continue
        out.write(f"{label} ...\n")
        out.flush()
        t0, before = time.monotonic(), len(host.actions)
        host.progress.step(number, len(steps), step.title)
        ctx.opts = ctx.options.only(step.reads)
        try:
            step.ensure(ctx)
        except KeyboardInterrupt:
            _save(ctx)
            out.write(
                f"\ndlcourse-install: stopped by Ctrl-C in step '{step.title}'. Run the same "
                "command again: it resumes at this step.\n"
            )
            return EXIT_INTERRUPTED
        except PreflightFailed as exc:
            if not opts.dry_run:
                out.write(f"\ndlcourse-install: {exc}\nNothing was changed.\n")
                return EXIT_REFUSED
            refused = True
            out.write("      would refuse this machine (the reasons are at the top)\n")
            continue
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
        finally:
            ctx.opts = ctx.options
        if step.name == "preflight" and not opts.dry_run:
            answer = _confirmed(ctx)
            if answer is not True:
                out.write("Nothing was changed.\n")
                return answer
        changes = len(host.actions) - before
        what = "nothing to change" if changes == 0 else f"{changes} change(s)"
        if opts.dry_run and changes:
            what = f"{changes} planned change(s)"
        out.write(f"      ok: {what} ({elapsed(time.monotonic() - t0)})\n")
        if not opts.dry_run and not step.always:
            ctx.state.mark_done(step.name, step.inputs(ctx))  # with what it installed
            _save(ctx)

    if opts.dry_run:
        out.write("\nOnce installed:\n" + "".join(f"  {line}\n" for line in closing(ctx)))
        if refused:
            out.write(
                "\nDry run: nothing was changed. This machine would be refused (see the top).\n"
            )
            return EXIT_REFUSED
        out.write(
            "\nDry run: nothing was changed. Run the same command without --dry-run, as root.\n"
        )
        return EXIT_OK
    out.write(f"\nDone in {elapsed(time.monotonic() - started)}.\n")
    out.write("".join(f"  {line}\n" for line in closing(ctx)))
    return EXIT_OK


def _confirmed(ctx: Context) -> bool | int:
    """True to go on, else the exit status."""
    if ctx.opts.yes:
        return True
    if not sys.stdin.isatty():
        ctx.out.write("dlcourse-install: not a terminal; pass --yes to install unattended.\n")
        return EXIT_BAD_OPTIONS
    answer = input("Install dlcourse on this server, as listed above and in --dry-run? [y/N] ")
    return True if answer.strip().lower() in ("y", "yes") else EXIT_FAILED


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
