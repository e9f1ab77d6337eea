"""README's layout block matches the tree (issue 14's "Done means").

The rule: every name in the block's first column exists (indented names inside the top-level
folder above them; a runtime folder described as untracked may be absent in a fresh checkout);
every top-level folder of the repository (hidden ones aside) is listed; and every subpackage of
the Python packages is named in its package's section.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fleet", "workers", "kitefleet", "paper_broker")


def _block(readme: str) -> list[str]:
    after = readme.split("## Layout", 1)[1]
    return after.split("```", 2)[1].strip("\n").splitlines()


def _sections(lines: list[str]) -> list[tuple[str, list[str], str]]:
    """(top-level name, indented names under it, the section's whole text)."""
    out: list[tuple[str, list[str], str]] = []
    # the descriptions start in one column (the first line's); names sit left of it
    gap = re.search(r"\s{2,}\S", lines[0])
    assert gap is not None, f"README layout's first line has no description: {lines[0]!r}"
    column = gap.end() - 1
    for line in lines:
        first = line[:column] if re.match(r"\S|  \S", line) else ""
        names = [n for n in first.split() if n != "..."]
        if line[:1] not in (" ", ""):
            out.append((names[0], [], line))
            continue
        top, children, text = out[-1]
        out[-1] = (top, children + names, text + "\n" + line)
    return out


def _ignored(root: Path, path: Path) -> bool:
    """A folder git ignores (a demo's or a build's leftovers in a working copy) is not the tree."""
    proc = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", path.name + "/"],
                          capture_output=True, check=False)
    return proc.returncode == 0


def _problems(root: Path) -> list[str]:
    sections = _sections(_block((root / "README.md").read_text()))
    problems: list[str] = []
    for top, children, text in sections:
        if not (root / top).exists() and "untracked" not in text:
            problems.append(f"README layout names {top}, which does not exist")
        for child in children:
            if not (root / top / child).exists():
                problems.append(f"README layout names {top}{child}, which does not exist")
    listed = {top.rstrip("/") for top, _, _ in sections}
    for path in sorted(root.iterdir()):
        if path.is_dir() and not path.name.startswith((".", "__")) and path.name not in listed \
                and any(path.iterdir()) and not _ignored(root, path):
            problems.append(f"top-level folder {path.name}/ is not in README's layout")
    texts = {top.rstrip("/"): text for top, _, text in sections}
    for package in PACKAGES:
        for init in sorted((root / package).glob("*/__init__.py")):
            sub = init.parent.name
            if f"{sub}/" not in texts.get(package, ""):
                problems.append(f"subpackage {package}/{sub}/ is not named in README's layout")
    return problems


def test_readme_layout_matches_the_tree() -> None:
    assert _problems(ROOT) == []


def test_a_stale_name_and_an_unlisted_folder_are_caught(tmp_path: Path) -> None:
    (tmp_path / "workers" / "jobs").mkdir(parents=True)
    (tmp_path / "workers" / "jobs" / "__init__.py").write_text("")
    (tmp_path / "workers" / "gone_pkg").mkdir()
    (tmp_path / "workers" / "gone_pkg" / "__init__.py").write_text("")
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "f").write_text("")
    (tmp_path / "README.md").write_text(
        "## Layout\n\n```\nworkers/   the workers\n  jobs/    one per job\n  old.py   gone\n"
        "data/      runtime (untracked)\n```\n")
    assert _problems(tmp_path) == [
        "README layout names workers/old.py, which does not exist",
        "top-level folder extra/ is not in README's layout",
        "subpackage workers/gone_pkg/ is not named in README's layout",
    ]
