"""The README's two commands are the ones CI and users run."""

from pathlib import Path

ROOT = Path(__file__).parents[1]
TEST_COMMAND = 'python -m pip install -e ".[all]" && python -m pytest -n auto'


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert TEST_COMMAND in readme
    assert TEST_COMMAND in ci.splitlines()


def test_readme_has_exactly_two_install_commands():
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("python -m pip install")]
    assert len(lines) == 2
