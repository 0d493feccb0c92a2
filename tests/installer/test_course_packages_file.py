"""The course packages file: a requirements file plus an optional conda: section, every bad
line named with its file and line number, nothing dropped."""

from dlcourse_installer.inputs.course_packages import parse

GOOD = """\
# Deep Learning, winter term (dlcourse-install packages FILE)
transformers==4.46.3
scikit-learn>=1.5,<2   # imported as sklearn
datasets[audio] >= 3
torchaudio
course-helpers @ https://example.edu/wheels/course_helpers-1.0-py3-none-any.whl
opencv-python-headless import=cv2

conda:
# conda-forge, in conda's own spelling
gdal=3.9  import=osgeo,osgeo_utils
conda-forge::ffmpeg
proj 9.5.*
"""


def test_a_requirements_file_and_a_conda_section():
    listed, errors = parse(GOOD, "course.txt")
    assert errors == []
    assert [(p.kind, p.spec, p.name, p.modules, p.line) for p in listed.packages] == [
        ("pip", "transformers==4.46.3", "transformers", (), 2),
        ("pip", "scikit-learn>=1.5,<2", "scikit-learn", (), 3),
        ("pip", "datasets[audio] >= 3", "datasets", (), 4),
        ("pip", "torchaudio", "torchaudio", (), 5),
        ("pip", "course-helpers @ https://example.edu/wheels/course_helpers-1.0-py3-none-any.whl",
         "course-helpers", (), 6),
        ("pip", "opencv-python-headless", "opencv-python-headless", ("cv2",), 7),
        ("conda", "gdal=3.9", "gdal", ("osgeo", "osgeo_utils"), 11),
        ("conda", "ffmpeg", "ffmpeg", (), 12),
        ("conda", "proj 9.5.*", "proj", (), 13),
    ]  # fmt: skip
    assert listed.text == GOOD  # kept as written, comments and all
    # torchaudio is not PyTorch's own any more: in maintenance, released apart (2.11.1).
    assert not any(p.is_pytorch for p in listed.packages)


def test_a_plain_requirements_txt_is_a_course_packages_file():
    listed, errors = parse("numpy\npandas==2.2.3\nmatplotlib\n", "requirements.txt")
    assert errors == [] and [p.kind for p in listed.packages] == ["pip"] * 3


def test_every_bad_line_gets_one_line_with_file_and_line_and_nothing_is_dropped():
    text = """\
numpy
-r more.txt
--index-url https://example.org/simple
pandas; python_version >= "3.9"
seaborn \\
==1.0
numpy
pytorch
ok-package
conda:
defaults::gdal
pytorch=2.5
torchvision
gdal "3.9"
conda:
ffmpeg import=
"""
    listed, errors = parse(text, "course.txt")
    assert errors == [
        "course.txt:2: -r: pip options are not taken here; list packages only (the installer "
        "chooses PyTorch's index itself)",
        "course.txt:3: --index-url: pip options are not taken here; list packages only (the "
        "installer chooses PyTorch's index itself)",
        "course.txt:4: environment markers (;) are not taken: every student has the same Python",
        "course.txt:5: line continuations (\\) are not taken: one package per line",
        "course.txt:6: '==1.0' is not a pip requirement (NAME, NAME==1.2, NAME>=1.2,<2, "
        "NAME[extra] or NAME @ URL)",
        "course.txt:7: numpy is listed twice (first on line 1)",
        "course.txt:8: PyTorch's pip name is torch (the installer installs it already)",
        "course.txt:11: defaults::gdal: only conda-forge packages are taken",
        "course.txt:12: pytorch from conda would replace the installer's PyTorch build: list "
        "torch in the pip part instead",
        "course.txt:13: torchvision from conda would replace the installer's PyTorch build: "
        "list torchvision in the pip part instead",
        "course.txt:14: 'gdal \"3.9\"' is not a conda package (NAME, NAME=1.2, NAME>=1.2 or "
        "NAME 1.2.*)",
        "course.txt:15: 'conda:' again (the section began on line 10)",
        "course.txt:16: import= takes module names separated by commas, got 'import='",
    ]
    # The good lines around them are all still there.
    assert [p.name for p in listed.packages] == ["numpy", "ok-package"]


def test_the_same_name_in_pip_and_conda_is_not_a_duplicate_but_spellings_are():
    _, errors = parse("Scikit_Learn\nscikit-learn\nconda:\nscikit-learn\n", "f")
    assert errors == ["f:2: scikit-learn is listed twice (first on line 1)"]


def test_excel_bom_blank_lines_and_comments_only():
    listed, errors = parse("\ufeff# nothing yet\n\n   \n", "f")
    assert errors == [] and listed.packages == ()
