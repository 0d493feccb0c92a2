"""Step 5: the students' environment (TLJH's /opt/tljh/user): what every student needs, and
the newest PyTorch CUDA build the driver and the GPUs run (catalogs/pytorch.py), checked on
every GPU as an unprivileged account and pinned so that no later install replaces it."""

from __future__ import annotations

import os
from dataclasses import replace

from dlcourse_installer.catalogs import pytorch
from dlcourse_installer.catalogs.user_packages import USER_PIP_PACKAGES
from dlcourse_installer.checklist.step import Context, Step, StepError, ensure_part
from dlcourse_installer.machine import nvidia, tljh, user_env, users


def ensure_user_environment(ctx: Context) -> None:
    host, paths, opts = ctx.host, ctx.paths, ctx.opts
    if not tljh.is_installed(host, paths) and not opts.dry_run:
        raise StepError(f"TLJH's user environment {paths.user_env} is missing: rerun the TLJH step")
    ensure_part(ctx, "user-environment")
    wanted = USER_PIP_PACKAGES + (["tensorflow"] if opts.tensorflow else [])
    todo = [p for p in wanted if not tljh.user_pip_installed(host, paths, p.partition("==")[0])]
    if todo:
        specs = [
            "tensorflow[and-cuda]" if p == "tensorflow" and not opts.no_gpu else p for p in todo
        ]
        tljh.user_pip_install(host, paths, specs)
    if opts.no_gpu:
        install_torch(ctx, pytorch.CPU)
        ctx.note("no GPU check: --no-gpu (the CPU build of PyTorch)")
    else:
        ensure_torch_on_the_gpus(ctx)
    pin_pytorch(ctx)


def pin_pytorch(ctx: Context) -> None:
    """PyTorch stays at the installed build: pip constraints, which every pip in the users'
    environment reads through its pip.conf, and conda pins, which conda and mamba read."""
    pins = user_env.pytorch(ctx.host, ctx.paths)
    if not pins:
        if ctx.opts.dry_run:
            ctx.note(
                f"then PyTorch is pinned at the installed build: {ctx.paths.pytorch_constraints} "
                f"(pip, through {ctx.paths.user_pip_conf}) and {ctx.paths.user_conda_pinned}"
            )
        return
    ctx.learned(replace(ctx.facts, pytorch=pins))
    if ensure_part(ctx, "pytorch-pins"):
        ctx.note(f"PyTorch pinned for pip and conda: {', '.join(pins)}")


def ensure_torch_on_the_gpus(ctx: Context) -> None:
    """The newest build the driver runs with code for the GPUs, proven on every GPU, or the
    fallback, said so."""
    host, opts = ctx.host, ctx.opts
    branch = ctx.driver_branch
    running = nvidia.driver_version(host) or (branch.number if branch else "")
    caps = nvidia.compute_capabilities(host) or []  # unknown before the driver answers
    build = ctx.pytorch_build = pytorch.first_choice(running, caps)
    gpus = f" on GPUs of compute capability {_capabilities(caps)}" if caps else ""
    if build is None:
        if not opts.dry_run:
            raise StepError(
                f"no PyTorch CUDA build runs with driver {running or '(none answers)'}{gpus} "
                "(CUDA 12 needs driver 525 or newer, CUDA 13 GPUs of compute capability 7.5 "
                "or newer): reinstall with --driver 580-server-open"
            )
        ctx.note("PyTorch: the newest CUDA build the driver chosen by ubuntu-drivers runs")
        return
    installed = torch_tag(ctx)
    fallback = pytorch.fallback(running, tried=(build.tag,), caps=caps)
    if installed == build.tag or (fallback and installed == fallback.tag and installed_ok(ctx)):
        return  # a fallback chosen by an earlier run stays
    ctx.note(f"PyTorch {build.describe()}, the newest build that driver {running} runs{gpus}")
    install_torch(ctx, build)
    if opts.dry_run:
        ctx.note(
            "once the driver answers, the GPUs' compute capability (nvidia-smi) rules out "
            "builds without code for them; then, as a temporary unprivileged account: "
            "torch.cuda.is_available() and a matrix product on each GPU; on failure, the build "
            "whose full-feature minimum driver this one meets"
        )
        return
    error = torch_check(ctx)
    if error is None:
        ctx.note(f"PyTorch {build.tag} checked on every GPU as an unprivileged account")
        return
    if fallback is None:
        raise StepError(f"PyTorch {build.tag} does not run on this server's GPUs: {error}")
    minimum = ".".join(str(n) for n in fallback.full_feature_driver or ())
    ctx.note(
        f"PyTorch {build.tag} failed on this server ({error}); falling back to "
        f"{fallback.describe()}, whose full feature set needs driver {minimum}, which "
        f"{running} meets"
    )
    ctx.pytorch_build = fallback
    install_torch(ctx, fallback)
    error = torch_check(ctx)
    if error is not None:
        raise StepError(
            f"PyTorch {fallback.tag} does not run on this server's GPUs either: {error}"
        )
    ctx.note(f"PyTorch {fallback.tag} checked on every GPU as an unprivileged account")


def _capabilities(caps: list[tuple[int, int]]) -> str:
    return ", ".join(sorted({f"{major}.{minor}" for major, minor in caps}))


def torch_tag(ctx: Context) -> str | None:
    """The CUDA build of the installed torch (``2.13.0+cu130`` -> ``cu130``)."""
    current = ctx.host.query([f"{ctx.paths.user_env}/bin/python", "-c", pytorch.VERSION])
    if not current.ok:
        return None
    return current.stdout.strip().partition("+")[2] or None


def installed_ok(ctx: Context) -> bool:
    return ctx.opts.dry_run or torch_check(ctx) is None


def install_torch(ctx: Context, build: pytorch.CudaBuild) -> None:
    if torch_tag(ctx) == build.tag:
        return
    # --index-url: PyTorch's own index carries each CUDA build; PyPI's has one.
    # --force-reinstall: the same torch version of another build counts as installed.
    # PIP_CONSTRAINT: this one command replaces the pinned build on purpose (the environment
    # variable overrides pip.conf's constraint; pip's documentation, "Configuration").
    tljh.user_pip_install(
        ctx.host, ctx.paths, list(pytorch.PACKAGES), "--force-reinstall",
        "--index-url", build.index, env={"PIP_CONSTRAINT": os.devnull},
    )  # fmt: skip


def torch_check(ctx: Context) -> str | None:
    """None if torch computes on every GPU for an ordinary account; else what went wrong."""
    python = f"{ctx.paths.user_env}/bin/python"
    with users.temporary_account(ctx.host) as account:
        check = ["runuser", "-u", account, "--", python, "-c", pytorch.CHECK]
        result = ctx.host.query(check, timeout=900)  # CUDA starts slowly on many GPUs
    if result.ok:
        return None
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit {result.rc}"


STEP = Step("user-environment", "Users' environment (PyTorch, CUDA)", ensure_user_environment,
            ("tensorflow", "no_gpu"), parts=("user-environment",))  # fmt: skip
