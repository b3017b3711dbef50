"""The project documents itself: no reference to planning files outside the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: words that would point a reader at documents this repository does not contain.
FOREIGN = re.compile(r"\bSPEC\b|\bNOTES(\.md)?\b|\.\./shared")


def test_no_file_cites_documents_outside_the_repository():
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "src").rglob("*.py"),
             *(ROOT / "src").rglob("*.js"), *(ROOT / "src").rglob("*.html"), *(ROOT / "src").rglob("*.yaml"),
             *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "projects").rglob("*.yaml")]  # fmt: skip
    cited = [f"{path.relative_to(ROOT)}:{n}" for path in files if path != Path(__file__)
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if FOREIGN.search(line)]  # fmt: skip
    assert cited == []


def test_every_docs_link_in_the_readme_exists():
    links = re.findall(r"\]\((docs/[^)#]+)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert links and [link for link in links if not (ROOT / link).is_file()] == []
