"""The ``lstm-sentiment`` command: subcommands, help, errors, and a regular install of the built wheel."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path
from typing import Dict, List, NamedTuple, Set

import pytest

import src
from src import cli
from src.cli import SUBCOMMANDS
from src.data import TextPreprocessor
from src.inference.predictor import SentimentPredictor
from src.models.model_dir import save_model_directory
from tests.helpers import REPO_ROOT, tiny_model

TEXTS = ["a great film", "an awful, dull plot"]
STATIC = "src/inference/static"  # the web page of lstm-sentiment serve: index.html and its .js and .css


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    processor = TextPreprocessor().build_vocab(["a great film", "an awful film", "dull plot"])
    folder = tmp_path_factory.mktemp("console") / "model"
    return save_model_directory(folder, tiny_model(vocab_size=processor.vocab_size), processor)


def _flags(help_text: str) -> Set[str]:
    """The flags a --help describes (after the usage, which names the program: ``python -m ...``)."""
    return set(re.findall(r"(?<![\w-])--?[a-z][a-z0-9-]*", help_text.split("\n\n", 1)[1]))


def test_help_lists_every_subcommand_with_a_summary(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lstm-sentiment ")
    for name, command in SUBCOMMANDS.items():
        assert re.search(rf"^\s+{name}\s+{re.escape(command.summary)}$", out, re.M), name
    assert list(SUBCOMMANDS) == ["train", "predict", "evaluate", "export", "serve"]


def test_version_is_the_packages(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"lstm-sentiment {src.__version__}\n"


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_each_subcommand_has_its_modules_flags_under_the_new_name(name, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([name, "--help"])
    assert stop.value.code == 0
    through_cli = capsys.readouterr().out
    with pytest.raises(SystemExit):
        importlib.import_module(SUBCOMMANDS[name].module).main(["--help"])  # today's name
    alone = capsys.readouterr().out
    assert through_cli.startswith(f"usage: lstm-sentiment {name} ")
    assert not alone.startswith(f"usage: lstm-sentiment {name} ")
    assert _flags(through_cli) == _flags(alone) and "--help" in _flags(alone) and len(_flags(alone)) > 2


@pytest.mark.parametrize("argv, message", [
    (["bogus"], "invalid choice: 'bogus'"),
    (["--model-dir", "models"], "unrecognized arguments: --model-dir"),
    ([], "give a command: train, predict, evaluate, export, serve"),
])
def test_no_or_an_unknown_subcommand_is_a_one_line_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lstm-sentiment: error: ") and message in err


def test_a_missing_dependency_is_one_line_naming_the_fix(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "src.inference.predict")  # imported anew, without tqdm
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert cli.main(["predict", "--model-dir", "models", "text"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lstm-sentiment predict cannot import tqdm" in err and "pip install" in err


def test_predict_through_the_command_prints_what_the_module_prints(model_dir, capsys):
    same = ["--model-dir", str(model_dir), "--precision", "float32"]  # the subprocess sees the CPU as it is
    assert cli.main(["predict", *same, *TEXTS]) == 0
    through_cli = capsys.readouterr().out
    module = subprocess.run([sys.executable, "-m", "src.inference.predict", *same, *TEXTS],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert module.returncode == 0, module.stderr
    assert through_cli == module.stdout
    assert [json.loads(line)["text"] for line in through_cli.splitlines()] == TEXTS


def test_python_m_src_is_the_same_command_and_help_does_not_load_torch():
    code = ("import runpy, sys\nsys.argv = ['src', '--help']\ntry:\n    runpy.run_module('src', run_name='__main__')\n"
            "except SystemExit as stop:\n    print('exit', stop.code, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m src ")
    assert all(name in result.stdout for name in SUBCOMMANDS)
    assert result.stdout.endswith("exit 0 False\n")


# A regular (not editable) install of the built wheel into a fresh virtual environment.


class Installed(NamedTuple):
    wheel: Path
    python: Path  # the fresh environment's interpreter
    command: Path  # its lstm-sentiment script
    site_packages: Path
    workdir: Path  # an empty folder: the commands never see the repository
    env: Dict[str, str]
    status_before: str  # git status of the repository before and after the build
    status_after: str


def _git_status() -> str:
    """The repository's state, ignored files (build/, *.egg-info) included; caches that imports write left out."""
    lines = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    return "\n".join(line for line in lines if "__pycache__" not in line and ".pytest_cache" not in line)


def _repository_files() -> List[str]:
    """What a clone of the repository holds once the lead has committed: tracked and new, not ignored, files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    return [name for name in listed if name and (REPO_ROOT / name).is_file()]


def _copy(names: List[str], target: Path) -> Path:
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target / name)
    return target


def _run(args: List[object], cwd: Path, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _borrow_dependencies(python: Path, workdir: Path, env: Dict[str, str]) -> Path:
    """Put this environment's site-packages on the fresh one's path, behind its own, and return its own.

    A path line in a .pth file is added to sys.path, but the .pth files inside that folder are not run, so the
    project's editable install (a .pth finder) stays out and ``src`` can only come from the wheel.
    """
    query = "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"
    paths = json.loads(_run([python, "-c", query], workdir, env).stdout)
    ours = sysconfig.get_paths()
    borrowed = dict.fromkeys([ours["purelib"], ours["platlib"]])
    (Path(paths["purelib"]) / "borrowed-dependencies.pth").write_text("\n".join(borrowed) + "\n", encoding="utf-8")
    return Path(paths["purelib"])


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """Build the wheel from a copy of the repository's files (so build/ and *.egg-info land there, not in the
    repository) and install it, without dependencies, into a fresh virtual environment.

    The fresh environment borrows the dependencies (torch, fastapi, ...) from the one running the tests:
    installing them anew would take minutes and gigabytes on every run, and they are not what is under test.
    What is: the wheel's own files (the package, its web page) and its console script.
    """
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("the wheel is built from the files git tracks: needs git and a clone of the repository")
    root = tmp_path_factory.mktemp("wheel")
    workdir = root / "empty"
    workdir.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    status_before = _git_status()
    source = _copy(_repository_files(), root / "source")
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                  root / "dist", source], workdir, env)
    assert build.returncode == 0, build.stderr
    status_after = _git_status()
    (wheel,) = (root / "dist").glob("lstm_sentiment-*.whl")
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / ("Scripts" if os.name == "nt" else "bin") / "python"
    install = _run([python, "-m", "pip", "install", "-q", "--no-deps", wheel], workdir, env)
    assert install.returncode == 0, install.stderr
    site_packages = _borrow_dependencies(python, workdir, env)
    command = python.parent / ("lstm-sentiment.exe" if os.name == "nt" else "lstm-sentiment")
    return Installed(wheel, python, command, site_packages, workdir, env, status_before, status_after)


def _command(installed: Installed, *args: object) -> subprocess.CompletedProcess:
    return _run([installed.command, *args], installed.workdir, installed.env)


@pytest.mark.slow
def test_the_installed_command_runs_from_the_wheel_alone(installed, model_dir):
    assert installed.status_after == installed.status_before, "building the wheel changed the repository"
    where = _run([installed.python, "-c", "import src, src.cli; print(src.__file__)"], installed.workdir,
                 installed.env)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).resolve().is_relative_to(installed.site_packages.resolve()), where.stdout
    helped = _command(installed, "--help")
    assert helped.returncode == 0, helped.stderr
    assert all(re.search(rf"^\s+{name}\s", helped.stdout, re.M) for name in SUBCOMMANDS), helped.stdout
    version = installed.wheel.name.split("-")[1]
    assert _command(installed, "--version").stdout == f"lstm-sentiment {version}\n"
    predicted = _command(installed, "predict", "--model-dir", model_dir, "--precision", "float32", "a great film")
    assert predicted.returncode == 0, predicted.stderr
    (line,) = predicted.stdout.splitlines()
    expected = SentimentPredictor.from_pretrained(model_dir).predict("a great film")
    assert json.loads(line)["label"] == expected["label"]
    assert json.loads(line)["probability"] == pytest.approx(expected["probability"], abs=1e-6)
    exported = _command(installed, "export", "--help")
    assert exported.returncode == 0 and exported.stdout.startswith("usage: lstm-sentiment export "), exported.stderr


def _digests(folder: Path) -> Dict[str, str]:
    """sha256 of every file under ``folder``, by its path relative to it."""
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file() and "__pycache__" not in path.parts}


def _installed_static(installed: Installed) -> Path:
    """The installed package's static folder, found the way a program finds its package data."""
    code = "import importlib.resources as r; print(r.files('src.inference') / 'static')"
    result = _run([installed.python, "-c", code], installed.workdir, installed.env)
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def _linked_assets(page: str) -> Set[str]:
    """The page's own scripts and style sheets (src= and href= of .js and .css), relative to the static folder."""
    links = re.findall(r"""(?:src|href)=["']([^"'?#]+\.(?:js|css))""", page)
    return {re.sub(r"^(\./|/)?(static/)?", "", link) for link in links if "://" not in link}


@pytest.mark.slow
def test_the_installed_package_holds_the_web_page_and_serves(installed):
    ours = {name[len(STATIC) + 1:]: hashlib.sha256((REPO_ROOT / name).read_bytes()).hexdigest()
            for name in _repository_files() if name.startswith(f"{STATIC}/")}
    assert "index.html" in ours, f"{STATIC}/index.html (the web page of lstm-sentiment serve) is not in the repository"
    static = _installed_static(installed)
    assert static.resolve().is_relative_to(installed.site_packages.resolve()), static
    assert _digests(static) == ours, "the wheel does not ship the web page as it is: see package-data in pyproject.toml"
    assets = _linked_assets((REPO_ROOT / STATIC / "index.html").read_text(encoding="utf-8"))
    assert {".js", ".css"} <= {Path(name).suffix for name in assets}, "index.html links no .js or no .css"
    assert assets <= set(ours), f"index.html links files that are not in {STATIC}: {sorted(assets - set(ours))}"
    served = _run([installed.command, "serve", "--help"], installed.workdir, installed.env)
    assert served.returncode == 0 and served.stdout.startswith("usage: lstm-sentiment serve "), served.stderr
