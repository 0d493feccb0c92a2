"""The roster as lecturers export it: comments, Excel's byte order mark and semicolons,
columns in any order, and one clear line for each bad row."""

import os
import subprocess
import sys
import uuid

import pytest

from dlcourse_installer import cli
from dlcourse_installer.checklist import runner
from dlcourse_installer.inputs import roster
from dlcourse_installer.inputs.options import Options, validate
from dlcourse_installer.inputs.roster import Student

from .conftest import UPSTREAM_TLJH
from .fakehost import FakeHost


def test_the_header_is_found_after_comments_and_blank_lines():
    """Old behaviour: a header not on line 1 made a student called "username"."""
    students, errors = roster.parse("# Deep learning, spring term\n\nusername,section\nada,A\n")
    assert errors == [] and students == (Student("ada", "section-a"),)


def test_columns_are_taken_by_their_header_name():
    """Old behaviour: section,username silently swapped the two."""
    students, errors = roster.parse("Section,UserName\nB 2,Grace\nA,ada\n")
    assert errors == []
    assert students == (Student("grace", "section-b-2"), Student("ada", "section-a"))


def test_a_file_without_a_header_is_username_then_section():
    students, _ = roster.parse("ada,A\ngrace,B\n")
    assert [s.username for s in students] == ["ada", "grace"]


def test_excel_byte_order_mark_and_semicolons_are_accepted(tmp_path):
    """Old behaviour: an Excel "CSV UTF-8" file was refused because of its BOM."""
    path = tmp_path / "students.csv"
    path.write_bytes("username;section\r\nada;A\r\nalan;B\r\n".encode("utf-8-sig"))
    opts, errors = cli.options_from(cli.build_parser().parse_args(
        ["--admin", "teacher", "--roster", str(path)]))  # fmt: skip
    assert errors == []
    assert opts.roster == (Student("ada", "section-a"), Student("alan", "section-b"))


def test_every_bad_row_gets_one_line():
    text = (
        "username,section\n"
        "Ada Lovelace,A\n"  # a space
        "ada,A\n"
        "ADA,B\n"  # the hub lowercases: a duplicate
        "alan\n"  # too few fields
        "grace,\n"  # no section
        "-dash,A\n"
        "jo:hn,A\n"
        "émile,A\n"
        f"{'x' * 33},A\n"
    )
    students, errors = roster.parse(text, "students.csv")
    assert students == (Student("ada", "section-a"),)
    assert [e.split(":")[1] for e in errors] == ["2", "4", "5", "6", "7", "8", "9", "10"]
    assert "'Ada Lovelace' is not a usable username" in errors[0]
    assert "'ada' appears twice" in errors[1]
    assert "expected 2 fields (username,section), got 1" in errors[2]
    assert "no section for 'grace'" in errors[3]
    assert all(e.count("\n") == 0 for e in errors)


def test_a_header_with_an_unknown_or_missing_column_is_refused():
    _, errors = roster.parse("# list\nusername,sectoin\nada,A\n", "r.csv")
    assert errors == ["r.csv:2: the header must name the columns username, section once each, "
                      "and may name role and gpu (got username, sectoin)"]  # fmt: skip


def test_roster_roles_make_teaching_assistants_staff():
    text = "username,section,role\nada,A,student\nbea,A,\ntom,,ta\numa,B,TA\nvic,B,boss\nwes,,\n"
    students, errors = roster.parse(text)
    assert students == (
        Student("ada", "section-a"),
        Student("bea", "section-a"),
        Student("tom", "", "ta"),  # a TA needs no section
        Student("uma", "section-b", "ta"),
    )
    assert errors == [
        "roster:6: role 'boss' of 'vic': student or ta",
        "roster:7: no section for 'wes'",
    ]
    opts = Options(roster=students, staff_group="tutors")
    assert opts.tas == ("tom", "uma")
    assert opts.groups() == {
        "section-a": ["ada", "bea"], "tutors": ["tom", "uma"], "section-b": ["uma"]
    }  # fmt: skip
    assert "--staff-group 'Bad Group': not a valid group name" in validate(
        Options(admins=("t",), staff_group="Bad Group")
    )


def test_a_file_that_is_not_utf8_is_refused_in_plain_words(tmp_path, capsys):
    path = tmp_path / "students.csv"
    path.write_bytes("username,section\nélise,A\n".encode("cp1252"))
    rc = cli.install(["--admin", "teacher", "--roster", str(path)], host=FakeHost(tmp_path / "h"))
    assert rc == runner.EXIT_BAD_OPTIONS
    assert "not UTF-8 text; in Excel, save it as 'CSV UTF-8'" in capsys.readouterr().err


@pytest.mark.live
@pytest.mark.skipif(os.geteuid() != 0, reason="useradd needs root (CI runs as root)")
@pytest.mark.skipif(not os.path.isdir(UPSTREAM_TLJH), reason="no ../shared/upstream TLJH copy")
@pytest.mark.parametrize("shape", ["t{}", "a.b-c_{}", "0{}", "x" * 24 + "{}"])
def test_accepted_names_become_real_accounts_the_way_tljh_makes_them(shape):
    """TLJH's own naming (tljh/normalize.py, long names shortened with a hash), then the real
    useradd. Random names: never a real or a demo account."""
    name = shape.format(uuid.uuid4().hex[:8])
    code = (
        f"import sys; sys.path.insert(0, {UPSTREAM_TLJH!r})\n"
        "from tljh.normalize import generate_system_username\n"
        f"print(generate_system_username('jupyter-' + {name!r}))"
    )
    account = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
    assert roster.parse(f"{name},A\n")[1] == []
    created = subprocess.run(["useradd", "--no-create-home", account], capture_output=True,
                             text=True)  # fmt: skip
    try:
        assert created.returncode == 0, created.stderr
    finally:
        subprocess.run(["userdel", account], capture_output=True)


@pytest.mark.parametrize("cell", ["²", "١", "𝟙", "+1", " 1_0"])
def test_a_gpu_cell_of_other_digits_is_one_line_and_exit_2(tmp_path, capsys, cell):
    """Old behaviour: '²' passed str.isdigit() and int('²') raised: a traceback."""
    path = tmp_path / "students.csv"
    path.write_text(f"username,section,gpu\nada,A,0\nalan,B,{cell}\n", encoding="utf-8")
    rc = cli.install(["--admin", "teacher", "--roster", str(path)], host=FakeHost(tmp_path / "h"))
    assert rc == runner.EXIT_BAD_OPTIONS == 2
    err = capsys.readouterr().err
    line = f"{path}:3: gpu {cell.strip()!r} of 'alan': a GPU index as nvidia-smi shows it"
    assert line in err and "Traceback" not in err
