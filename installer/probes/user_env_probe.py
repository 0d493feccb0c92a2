"""What the students' environment has of the course list, and whether each package imports.

Not part of the installer's process: the users' environment's own Python runs this file's
text (``python -c SOURCE COMMAND JSON``, see user_env.py), as root to read versions and as a
temporary unprivileged account to import, exactly as a student's kernel would. JSON is the
course list (course_packages.Package fields); one JSON object per package comes back:

    installed  {"name", "kind", "version": "1.5.2" | null, "satisfied": true | false | null}
    imports    {"name", "kind", "modules": ["sklearn"], "error": null | "import sklearn: ..."}

Standard library only, plus each tool's own rules where the environment has them: pip's
version specifiers from ``packaging`` (or pip's copy of it; pip is in every environment it
installs into) and conda's match specs from conda itself (in TLJH's conda environment).
Module names come from the installed distribution's metadata (top_level.txt, else its file
list: importlib.metadata.packages_distributions), so scikit-learn is checked as ``sklearn``;
a conda package's Python distribution is the ``*.dist-info`` among its files.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata

IMPORT_SECONDS = 600  # importing a CUDA library the first time can take minutes


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def conda_records():
    """Package name -> its conda-meta record: what conda installed here."""
    folder = os.path.join(sys.prefix, "conda-meta")
    records = {}
    if os.path.isdir(folder):
        for entry in sorted(os.listdir(folder)):
            if entry.endswith(".json"):
                with open(os.path.join(folder, entry), encoding="utf-8") as f:
                    record = json.load(f)
                records[record["name"]] = record
    return records


def pip_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def pip_satisfied(spec, version, name):
    try:
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement
    requirement = Requirement(spec)
    if requirement.url:  # name @ URL: installed is all that can be told
        return True
    return requirement.specifier.contains(version, prereleases=True)


def conda_satisfied(spec, version, name):
    try:
        from conda.core.prefix_data import PrefixData
        from conda.models.match_spec import MatchSpec
    except ImportError:
        return None
    record = PrefixData(sys.prefix).get(name, None)
    return record is not None and MatchSpec(spec).match(record)


def installed(package, records):
    name, kind = package["name"], package["kind"]
    if kind == "pip":
        version = pip_version(name)
        judge = pip_satisfied
    else:
        version = records[name]["version"] if name in records else None
        judge = conda_satisfied
    try:
        satisfied = version is not None and judge(package["spec"], version, name)
    except Exception:  # the tool could not read the spec: let the install itself say why
        satisfied = None
    return {"name": name, "kind": kind, "version": version, "satisfied": satisfied}


def conda_distribution(record):
    """The Python distribution a conda package installed, from its *.dist-info folder."""
    for path in record.get("files", []):
        found = re.search(r"site-packages/([^/]+)\.dist-info/METADATA$", path)
        if found:
            return found.group(1).split("-")[0]
    return None


def top_level_modules(distribution, owners):
    """The modules to import for a distribution: its own name's if it has one (setuptools
    also ships pkg_resources), else every public top-level module it installs."""
    wanted = canonical(distribution)
    names = sorted(
        module
        for module, dists in owners.items()
        if wanted in {canonical(d) for d in dists}
        and module.isidentifier()
        and not module.startswith("_")
    )
    own = wanted.replace("-", "_")
    return [own] if own in names else names


def try_import(module, home):
    """None if it imports in a fresh interpreter; else the package's own error, one line."""
    env = dict(os.environ, HOME=home)
    try:
        done = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            capture_output=True, text=True, timeout=IMPORT_SECONDS, cwd=home, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"import {module}: no answer in {IMPORT_SECONDS} s"
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        return f"import {module}: killed by signal {-done.returncode}"
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return f"import {module}: {lines[-1] if lines else f'exit {done.returncode}'}"


def imports(package, records, owners, home):
    name, kind = package["name"], package["kind"]
    result = {"name": name, "kind": kind, "modules": list(package["modules"]), "error": None}
    record = records.get(name)
    if (kind == "pip" and pip_version(name) is None) or (kind == "conda" and record is None):
        result["error"] = "not installed"
        return result
    if not result["modules"]:
        distribution = name if kind == "pip" else conda_distribution(record)
        if distribution is None:
            return result  # a conda package without Python code (ffmpeg): nothing to import
        result["modules"] = top_level_modules(distribution, owners)
    if not result["modules"]:
        result["error"] = "its metadata names no module to import: add import=MODULE"
        return result
    for module in result["modules"]:
        result["error"] = try_import(module, home)
        if result["error"]:
            break
    return result


def main(argv):
    command, listed = argv[0], json.loads(argv[1])
    records = conda_records()
    if command == "installed":
        for package in listed:
            print(json.dumps(installed(package, records)), flush=True)
        return 0
    owners = metadata.packages_distributions()
    # A fresh home, as a student's: some packages write caches there when imported.
    home = tempfile.mkdtemp(prefix="dlcourse-import-check-")
    try:
        for package in listed:
            print(json.dumps(imports(package, records, owners, home)), flush=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
