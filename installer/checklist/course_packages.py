"""Step 6: the course's packages (``--packages FILE``, or ``dlcourse-install packages FILE``
during the term) in the students' environment, each imported as a student would; PyTorch
stays as the users' environment step chose it."""

from __future__ import annotations

import time

from dlcourse_installer.catalogs import pytorch
from dlcourse_installer.checklist.step import Context, Step, StepError, bullets, ensure_part
from dlcourse_installer.checklist.user_environment import pin_pytorch
from dlcourse_installer.inputs import course_packages
from dlcourse_installer.inputs.course_packages import CoursePackages, Package
from dlcourse_installer.machine import user_env
from dlcourse_installer.machine.host import CommandError


def ensure_course_packages(ctx: Context) -> None:
    """The lecturer's list (--packages FILE, else the one kept from an earlier run) in the
    users' environment, each package imported as a student would, PyTorch left as it is."""
    host, paths, opts = ctx.host, ctx.paths, ctx.opts
    listed = opts.packages or kept_course_packages(ctx)
    if listed is None:
        ctx.note("none listed (`--packages FILE` or `dlcourse-install packages FILE` adds them)")
        return
    ensure_part(ctx, "course-packages")
    if not listed.packages:
        ctx.note(f"{paths.course_packages} lists no package")
        return
    if not ctx.facts.pytorch and not opts.dry_run:
        raise StepError(
            "PyTorch is not in the users' environment yet: run the whole install first "
            "(dlcourse-install --admin NAME ...), then add course packages"
        )
    rows = user_env.installed(host, paths, list(listed.packages)) or []
    there = {(row["kind"], row["name"]) for row in rows if row["satisfied"]}
    todo = [p for p in listed.packages if (p.kind, p.name) not in there]
    ctx.note(
        f"{len(listed.packages)} listed ({', '.join(p.spec for p in listed.packages)}); "
        f"{len(listed.packages) - len(todo)} installed already"
    )
    if todo:
        snapshot_user_packages(ctx)
        install_course_packages(ctx, todo)
        pin_pytorch(ctx)  # a listed torchaudio joins the pins
    if opts.dry_run:
        ctx.note(
            "then, as a temporary unprivileged account, each package is imported (module "
            "names from its metadata, or import=), one line per failure with its own error"
        )
        return
    check_imports(ctx, list(listed.packages))


def kept_course_packages(ctx: Context) -> CoursePackages | None:
    text = ctx.host.read_text(ctx.paths.course_packages)
    if text is None:
        return None
    listed, errors = course_packages.parse(text, ctx.paths.course_packages)
    if errors:
        raise StepError("the kept course packages file has errors:\n" + bullets(errors))
    return listed


def snapshot_user_packages(ctx: Context) -> None:
    """The environment as it was, for rollback: `pip install -r` takes it back."""
    frozen = user_env.pip_list(ctx.host, ctx.paths)
    folder = ctx.paths.package_snapshots
    if frozen is None:
        ctx.note(f"first a snapshot (pip list --format=freeze) of the environment to {folder}/")
        return
    path = f"{folder}/pip-list-{time.strftime('%Y%m%dT%H%M%S')}.txt"
    ctx.host.write_file(path, frozen, mode=0o644)
    ctx.note(f"the environment before this change, for rollback: {path}")


def install_course_packages(ctx: Context, todo: list[Package]) -> None:
    """conda first, then pip (conda does not see what pip installs); PyTorch's own packages
    from the index of the installed build, so torchaudio matches torch's CUDA."""
    host, paths = ctx.host, ctx.paths
    conda = [p.spec for p in todo if p.kind == "conda"]
    from_pytorch = [p.spec for p in todo if p.is_pytorch]
    from_pypi = [p.spec for p in todo if p.kind == "pip" and not p.is_pytorch]
    try:
        if conda:
            user_env.conda_install(host, paths, conda)
        if from_pytorch:
            user_env.pip_install(host, paths, from_pytorch, "--index-url", pytorch_index(ctx))
        if from_pypi:
            user_env.pip_install(host, paths, from_pypi)
    except CommandError as exc:
        raise StepError(f"{exc}{_kept_pytorch_hint(ctx, exc)}") from exc


def pytorch_index(ctx: Context) -> str:
    torch = next((pin for pin in ctx.facts.pytorch if pin.startswith("torch==")), "")
    index = pytorch.index_of(torch) or (ctx.pytorch_build and ctx.pytorch_build.index)
    return index or pytorch.INDEX.format(tag="<the installed build>")


def _kept_pytorch_hint(ctx: Context, exc: CommandError) -> str:
    output = exc.result.stdout + exc.result.stderr
    if exc.result.argv[0].endswith("/conda") and "pytorch" in output:
        return (
            ". A conda-forge package here needs conda's pytorch, which would replace the "
            "installer's build: list it in the pip part instead"
        )
    if "ResolutionImpossible" in output and "torch" in output:
        return (
            f". A listed package needs another PyTorch than the installer's "
            f"({', '.join(ctx.facts.pytorch)}, kept by {ctx.paths.pytorch_constraints}): "
            "list a release of it that works with this PyTorch"
        )
    return ""


def check_imports(ctx: Context, packages: list[Package]) -> None:
    try:
        rows = user_env.imports(ctx.host, ctx.paths, packages)
    except RuntimeError as exc:
        raise StepError(f"the import check could not run as a temporary account: {exc}") from exc
    failed = [row for row in rows if row["error"]]
    for row in failed:
        ctx.note(f"{row['name']}: {row['error']}")
    if failed:
        raise StepError(
            f"{len(failed)} of {len(rows)} course packages do not import for a student (each "
            "with its own error above)"
        )
    modules = sorted({m for row in rows for m in row["modules"]})
    ctx.note(f"imported as a temporary unprivileged account: {', '.join(modules) or 'nothing'}")


STEP = Step("course-packages", "Course packages", ensure_course_packages, ("packages",),
            parts=("course-packages",))  # fmt: skip
