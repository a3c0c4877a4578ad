"""The docs cannot drift from the code: the reference pages are what the code renders, the site builds
with ``mkdocs build --strict``, the "your data" commands run on the sample, and the distribution builds
into a wheel and an sdist that ``twine check`` passes."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reorder_cli import methods as registry
from reorder_cli import reference

from .conftest import invoke

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gen_reference", REPO / "scripts" / "gen_reference.py")
gen_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen_reference)


# ------------------------------------------------------------------ generated reference pages


def test_reference_pages_are_what_the_code_renders():
    """docs/reference/*.md equal what reorder_cli.reference renders: run scripts/gen_reference.py after a
    change to a key, a method, a stage, an option or an exit code."""
    assert gen_reference.stale() == [], "run: python scripts/gen_reference.py"


def test_a_registry_change_makes_its_page_stale(monkeypatch):
    """The negative control: a method described differently in the registry makes methods.md stale."""
    saw = registry.METHODS["saw"]
    monkeypatch.setitem(registry.METHODS, "saw", type(saw)(**{**saw.__dict__, "description": "changed"}))
    assert gen_reference.stale() == ["methods.md"]


def test_every_page_is_in_the_nav():
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    for name in reference.PAGES:
        assert f"reference/{name}" in nav, name


def _exit_codes(source: str) -> set[int]:
    """The codes of every ``typer.Exit(...)`` in ``source`` (``Exit()`` is 0)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Exit":
            found.add(node.args[0].value if node.args else 0)
    return found


def test_the_exit_codes_page_lists_every_code_the_cli_gives():
    got = _exit_codes((REPO / "reorder_cli" / "cli.py").read_text(encoding="utf-8"))
    assert got == set(reference.EXIT_CODES), f"cli.py exits with {sorted(got)}; reference.EXIT_CODES has " \
        f"{sorted(reference.EXIT_CODES)}"
    # the negative control: a code the table lacks is found
    assert _exit_codes("import typer\nraise typer.Exit(3)\n") - set(reference.EXIT_CODES) == {3}


# ------------------------------------------------------------------ the site


def test_the_site_builds_strict(tmp_path):
    pytest.importorskip("material", reason="needs the extra 'docs' (mkdocs-material)")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                           "-d", str(tmp_path / "site")], capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "guides" / "your-data" / "index.html").is_file()
    assert not (tmp_path / "site" / "_incoming").exists()  # other helpers' drafts stay out of the site


# ------------------------------------------------------------------ "your data in five commands"


def _block(path: Path) -> list[str]:
    """The lines of the first ```bash block after the "Your data in five commands" heading of ``path``."""
    text = path.read_text(encoding="utf-8")
    section = re.split(r"^#+ Your data in five commands$", text, flags=re.M)[1]
    return re.search(r"^```bash\n(.*?)^```", section, flags=re.S | re.M).group(1).strip().splitlines()


def test_the_readme_and_the_guide_show_the_same_commands():
    assert _block(REPO / "README.md") == _block(REPO / "docs" / "guides" / "your-data.md")


def test_your_data_commands_run_on_the_sample(tmp_path, monkeypatch):
    """Every line of the block, as written, from a folder holding the repo's configs and sample: the
    variables are set, `pip install` is what this environment already did, every `reorder` command
    exits 0, and the output it names is verified against its inputs."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    shutil.copytree(REPO / "tests" / "data" / "sample", tmp_path / "tests" / "data" / "sample")
    monkeypatch.chdir(tmp_path)
    variables: dict[str, str] = {}
    ran = []
    for line in _block(REPO / "docs" / "guides" / "your-data.md"):
        words = shlex.split(re.sub(r"\$\{?(\w+)\}?", lambda m: variables[m.group(1)], line), comments=True)
        if re.fullmatch(r"\w+=\S+", words[0]) and len(words) == 1:
            name, value = words[0].split("=", 1)
            variables[name] = value
        elif words[:2] == ["pip", "install"]:
            continue
        else:
            assert words[0] == "reorder", line
            result = invoke(*words[1:])
            assert result.exit_code == 0, f"{line}\n{result.output}"
            ran.append(words[1])
    assert ran == ["preview", "run", "stats", "verify"]
    assert variables["DATA"] == "tests/data/sample"  # as shipped, the commands run on the sample
    assert (tmp_path / "out" / "my-saw" / ".manifest.json").is_file()


# ------------------------------------------------------------------ the distribution


@pytest.mark.slow
def test_the_wheel_and_sdist_pass_twine_check(tmp_path):
    pytest.importorskip("build", reason="needs the extra 'test' (build)")
    pytest.importorskip("twine", reason="needs the extra 'test' (twine)")
    src = tmp_path / "src"  # a copy of what the distribution is made of: nothing is written into the checkout
    shutil.copytree(REPO / "reorder_cli", src / "reorder_cli", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    made = sorted(p.name for p in dist.iterdir())
    assert [n for n in made if n.endswith(".whl")] == ["reorder-0.1.0-py3-none-any.whl"], made
    assert [n for n in made if n.endswith(".tar.gz")] == ["reorder-0.1.0.tar.gz"], made
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# ------------------------------------------------------------------ the Quickstart is what CI runs


def quickstart_commands(readme: str) -> list[str]:
    """The bash blocks of the README's Quickstart section, in order."""
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_the_quickstarts_second_command_is_what_ci_runs():
    """The README's Quickstart has exactly two commands; `.ci/run` runs the second one, character for character."""
    commands = quickstart_commands((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(commands) == 2
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert commands[1] in ci
    # negative control: a README whose test command lost the CI constraints is caught
    drifted = commands[1].replace("-c .ci/constraints.txt ", "")
    assert drifted != commands[1] and drifted not in ci
