"""Course packages on the fake Ubuntu GPU server: at install time (--packages), during the term
(`dlcourse-install packages`), idempotent, PyTorch never replaced, imports checked as a
temporary account, `status` against the list, the dry run showing the list."""

import contextlib
import io
import os

import pytest

from dlcourse_installer import cli
from dlcourse_installer.checklist import runner
from dlcourse_installer.checklist.state import State
from dlcourse_installer.layout.paths import Paths

from .conftest import install
from .fakehost import FakeDryHost, FakeHost

ARGV = ["--admin", "teacher", "--yes"]
COURSE = """\
# Deep Learning (kept in the course repository)
transformers==4.46.3
scikit-learn
torchaudio

conda:
gdal=3.9
"""


def course_file(tmp_path, text=COURSE, name="course-packages.txt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture
def server(tmp_path):
    return FakeHost(tmp_path / "server", driver_needs_reboot=False)


def packages(host, path, *extra) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.packages([path, *extra], host=host, paths=Paths())
    return rc, out.getvalue()


def index_of(actions, text):
    return next(i for i, a in enumerate(actions) if text in a)


def test_install_time_packages_after_pytorch_pinned_with_the_build_kept(server, tmp_path):
    rc, out = install(server, [*ARGV, "--packages", course_file(tmp_path)])
    assert rc == runner.EXIT_OK, out
    a = server.actions
    # PyTorch is pinned before any course package goes in; conda first, then pip.
    pinned = index_of(a, "write /opt/tljh/user/pip.conf")
    assert pinned < index_of(a, "write /opt/dlcourse/state/packages/pip-list-")
    pip = "pip install --constraint /opt/tljh/user/pytorch-constraints.txt"
    conda = index_of(a, "conda install --yes --prefix /opt/tljh/user --override-channels "
                        "-c conda-forge gdal=3.9")  # fmt: skip
    pypi = index_of(a, f"{pip} transformers==4.46.3 scikit-learn torchaudio")
    assert pinned < conda < pypi < index_of(a, "useradd --system --user-group")
    assert server.torch == "2.14.1+cu132"  # the build the installer chose and checked
    # torchaudio is in maintenance and pins no torch build: from PyPI, not pinned with
    # PyTorch (before: from PyTorch's index, whose newest torchaudio no longer matches).
    assert server.user_pip["torchaudio"] == "2.11.1"
    assert not any("whl/cu132 torchaudio" in action for action in a)
    constraints = server.read_text("/opt/tljh/user/pytorch-constraints.txt")
    assert "torch==2.14.1+cu132\n" in constraints and "torchaudio" not in constraints
    assert "pytorch ==2.14.1+cu132\n" in server.read_text("/opt/tljh/user/conda-meta/pinned")
    assert server.read_text("/etc/dlcourse/course-packages") == COURSE
    # Checked as a temporary unprivileged account, by the module names the metadata gives.
    assert any(account.startswith("dlcourse-check-") for account in server.checked_as)
    assert "imported as a temporary unprivileged account: osgeo, sklearn, torchaudio, " in out
    assert "Packages:     /etc/dlcourse/course-packages" in out


def test_a_second_run_changes_nothing_and_a_recheck_installs_nothing(server, tmp_path):
    argv = [*ARGV, "--packages", course_file(tmp_path)]
    assert install(server, argv)[0] == runner.EXIT_OK
    server.actions.clear()
    rc, out = install(server, argv)
    assert rc == runner.EXIT_OK and server.actions == []
    rc, out = install(server, [*argv, "--recheck"])
    assert rc == runner.EXIT_OK, out
    assert "4 listed (transformers==4.46.3, scikit-learn, torchaudio, gdal=3.9); 4 installed" in out
    assert not [a for a in server.actions if "install" in a and "/user/bin/" in a]
    assert not [a for a in server.actions if "/state/packages/" in a]  # no snapshot either


def test_mid_term_packages_installs_only_what_is_new_and_keeps_the_list(server, tmp_path):
    assert install(server, [*ARGV, "--packages", course_file(tmp_path)])[0] == runner.EXIT_OK
    server.actions.clear()
    new = course_file(tmp_path, COURSE.replace("scikit-learn\n", "scikit-learn\ndatasets\n"),
                      name="week5.txt")  # fmt: skip
    rc, out = packages(server, new)
    assert rc == runner.EXIT_OK, out
    installs = [a for a in server.actions if "pip install" in a or "conda install" in a]
    assert installs == ["run /opt/tljh/user/bin/python -m pip install --constraint "
                        "/opt/tljh/user/pytorch-constraints.txt datasets"]  # fmt: skip
    assert server.read_text("/etc/dlcourse/course-packages").count("datasets") == 1
    assert "[1/1] Course packages" in out and "the environment before this change" in out
    assert server.torch == "2.14.1+cu132"
    # The same file again: checked once more (the lecturer asked), nothing installed.
    server.actions.clear()
    rc, out = packages(server, new)
    assert rc == runner.EXIT_OK and not [a for a in server.actions if "install" in a]


def test_each_failing_import_is_one_line_with_the_packages_own_error(server, tmp_path):
    server.import_errors = {
        "gdal": "import osgeo: ImportError: libgdal.so.35: cannot open shared object file",
        "transformers": "import transformers: ModuleNotFoundError: No module named 'regex'",
    }
    rc, out = install(server, [*ARGV, "--packages", course_file(tmp_path)])
    assert rc == runner.EXIT_FAILED
    assert ("      transformers: import transformers: ModuleNotFoundError: No module named "
            "'regex'\n") in out  # fmt: skip
    assert "      gdal: import osgeo: ImportError: libgdal.so.35: cannot open shared" in out
    assert "2 of 4 course packages do not import for a student" in out
    assert "course-packages" not in State.load(server, Paths()).done  # the rerun checks again


def test_a_package_that_wants_another_torch_is_refused_and_torch_stays(server, tmp_path):
    assert install(server, ARGV)[0] == runner.EXIT_OK
    rc, out = packages(server, course_file(tmp_path, "torch==2.15.0\n"))
    assert rc == runner.EXIT_FAILED
    assert "ResolutionImpossible" in out
    assert "needs another PyTorch than the installer's (torch==2.14.1+cu132, " in out
    assert server.torch == "2.14.1+cu132"


def test_a_conda_package_that_needs_conda_pytorch_is_refused_by_the_pin(server, tmp_path):
    assert install(server, ARGV)[0] == runner.EXIT_OK
    rc, out = packages(server, course_file(tmp_path, "conda:\ntorchmetrics\n"))
    assert rc == runner.EXIT_FAILED
    assert "needs conda's pytorch, which would replace the installer's build" in out
    assert "torchmetrics" not in server.user_conda and server.torch == "2.14.1+cu132"


def test_packages_before_the_install_says_to_install_first(server, tmp_path):
    server._tljh_bootstrap([], {"TLJH_INSTALL_PREFIX": "/opt/tljh"})  # TLJH, but no PyTorch
    rc, out = packages(server, course_file(tmp_path))
    assert rc == runner.EXIT_FAILED
    assert "PyTorch is not in the users' environment yet: run the whole install first" in out
    assert not [a for a in server.actions if "pip install" in a or "conda install" in a]


def test_a_bad_file_is_every_error_with_its_line_and_nothing_runs(server, tmp_path, capsys):
    bad = course_file(tmp_path, "numpy\n-e .\nconda:\npytorch\n")
    assert cli.packages([bad], host=server, paths=Paths()) == runner.EXIT_BAD_OPTIONS
    err = capsys.readouterr().err
    assert f"{bad}:2: -e: pip options are not taken here" in err
    assert f"{bad}:4: pytorch from conda would replace" in err
    assert server.commands == []
    rc = cli.install([*ARGV, "--packages", bad], host=server, paths=Paths())
    assert rc == runner.EXIT_BAD_OPTIONS and server.commands == []


def test_the_dry_run_shows_the_list_and_what_it_would_run(tmp_path):
    host = FakeDryHost(tmp_path / "server")
    rc, out = install(host, ["--dry-run", *ARGV, "--packages", course_file(tmp_path)])
    assert rc == runner.EXIT_OK, out
    step = out[out.index("[6/10] Course packages") : out.index("[7/10]")]
    assert "4 listed (transformers==4.46.3, scikit-learn, torchaudio, gdal=3.9)" in step
    assert "write /etc/dlcourse/course-packages (mode 0644, root:root)" in step
    assert "| transformers==4.46.3" in step  # the kept file, as written
    assert "first a snapshot (pip list --format=freeze) of the environment" in step
    assert "$ /opt/tljh/user/bin/conda install --yes --prefix /opt/tljh/user" in step
    assert "pytorch-constraints.txt transformers==4.46.3 scikit-learn torchaudio" in step
    assert "then, as a temporary unprivileged account, each package is imported" in step
    assert not os.path.exists(host.local("/etc/dlcourse/course-packages"))  # nothing written


def test_status_shows_what_is_installed_against_the_list(server, tmp_path, capsys):
    assert install(server, [*ARGV, "--packages", course_file(tmp_path)])[0] == runner.EXIT_OK
    server.user_pip["transformers"] = "4.45.0"  # changed by hand since
    del server.user_pip["scikit-learn"]
    capsys.readouterr()
    cli.status(server, Paths())
    text = capsys.readouterr().out
    assert "Course packages (/etc/dlcourse/course-packages):" in text
    assert "  pip   transformers==4.46.3  4.45.0 (not what the list asks for)" in text
    assert "  pip   scikit-learn          not installed" in text
    assert "  conda gdal=3.9              3.9" in text
    assert "PyTorch kept at torch==2.14.1+cu132, torchvision==0.29.2+cu132 (" in text


def test_a_rerun_without_packages_keeps_installing_the_kept_list(server, tmp_path):
    assert install(server, [*ARGV, "--packages", course_file(tmp_path)])[0] == runner.EXIT_OK
    del server.user_pip["scikit-learn"]  # lost, say, to a hand-made change
    rc, out = install(server, [*ARGV, "--recheck"])
    assert rc == runner.EXIT_OK, out
    assert server.user_pip["scikit-learn"] and server.read_text("/etc/dlcourse/course-packages")
