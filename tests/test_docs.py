"""Every result column is documented (docs/results.md), as every hook is (CONTRIBUTING.md)."""

from pathlib import Path

from pwmbench.results.tables import CURVE_METRICS, RUNS_SCHEMA

DOC = (Path(__file__).parents[1] / "docs" / "results.md").read_text()


def test_every_run_column_is_documented():
    missing = [name for name in RUNS_SCHEMA.names if f"| `{name}` |" not in DOC]
    assert not missing, f"document these run columns in docs/results.md: {missing}"


def test_every_curve_column_is_documented():
    missing = [name for name in ("epoch", "env_steps", "wall_s", *CURVE_METRICS) if f"| `{name}` |" not in DOC]
    assert not missing, f"document these curve columns in docs/results.md: {missing}"


# ------------------------------------------------------------------------------------ links and pointers
import re  # noqa: E402

from click.testing import CliRunner  # noqa: E402

ROOT = Path(__file__).parents[1]
MARKDOWN = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_relative_links_and_anchors_in_the_docs_resolve():
    broken = []
    for doc in MARKDOWN:
        text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists() or anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, f"links that point at nothing: {broken}"


def test_every_pointer_into_the_protocol_names_an_existing_section():
    anchors = _anchors(ROOT / "docs" / "protocol.md")
    files = [*MARKDOWN, *(ROOT / "suites").glob("*.toml"), *(ROOT / "pwmbench").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]
    bad = [f"{f.relative_to(ROOT)}: #{a}" for f in files for a in re.findall(r"protocol\.md#([\w-]+)", f.read_text()) if a not in anchors]
    assert not bad, f"docs/protocol.md has no such section: {bad}"


def test_user_facing_text_is_self_contained():
    """Docs, suite files and every command's --help say things in their own words or point into this repository,
    never at sections of a guide or reference files a user does not have."""
    from pwmbench.cli import main

    pattern = re.compile(r"§|seed guide|reference/\w+\.md|SPEC\.md")
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in [*MARKDOWN, *(ROOT / "suites").glob("*.toml")]}
    commands = [[name] for name in main.commands if name != "data"] + [["data", name] for name in main.commands["data"].commands]
    for args in commands:
        texts["pwmbench " + " ".join(args) + " --help"] = CliRunner().invoke(main, [*args, "--help"]).output
    bad = [f"{where}: {m.group(0)!r}" for where, text in texts.items() for m in pattern.finditer(text)]
    assert not bad, f"point to docs/protocol.md or say it in words: {bad}"
