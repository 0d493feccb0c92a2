"""The one reader of secret files (dlcourse_secretfile): regular files of at most 4 KiB
holding one line, whatever the path names. Its callers' own tests: tests/exporter/
test_config.py, tests/installer/test_gpu_hook_hostile.py, tests/installer/
test_hub_snippet_secrets.py."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from dlcourse_secretfile import MAX_SECRET_BYTES, SecretFileError, read_secret
from dlcourse_testing.secret_files import REASONS, hostile_secret_files

PACKAGE = Path(__file__).resolve().parents[2] / "secretfile"


@pytest.mark.parametrize("what", sorted(REASONS))
def test_what_would_hang_or_flood_a_reader_is_one_line(tmp_path, what):
    path = hostile_secret_files(tmp_path)[what]
    with pytest.raises(SecretFileError) as error:
        read_secret(path)
    assert str(error.value) == f"{path}: {REASONS[what]}"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"two\nlines\n", "more than one line, or control characters"),
        (b"t\x00ken", "more than one line, or control characters"),
        (b"\xff\xfe", "not UTF-8 text (byte 0)"),
    ],
)
def test_a_file_that_is_no_token_is_one_line(tmp_path, content, reason):
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(SecretFileError) as error:
        read_secret(path)
    assert str(error.value) == f"{path}: {reason}"


def test_a_directory_and_a_missing_file_are_one_line(tmp_path):
    with pytest.raises(SecretFileError, match="not a regular file \\(a directory\\)"):
        read_secret(tmp_path)
    with pytest.raises(SecretFileError, match="absent: No such file or directory"):
        read_secret(tmp_path / "absent")


def test_a_token_is_read_stripped_also_through_a_link_as_kubernetes_projects_it(tmp_path):
    data = tmp_path / "..2026_01_01" / "token"
    data.parent.mkdir()
    data.write_text(" s3cret \n")
    (tmp_path / "..data").symlink_to(data.parent.name)
    (tmp_path / "token").symlink_to("..data/token")
    assert read_secret(tmp_path / "token") == "s3cret"
    exact = tmp_path / "exact"
    exact.write_text("t" * MAX_SECRET_BYTES)
    assert read_secret(str(exact)) == "t" * MAX_SECRET_BYTES


def test_the_reader_imports_only_the_standard_library():
    """It runs in the exporter's venv and in TLJH's hub environment alike."""
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "__future__", name
