"""Release checks: every place that names kubetune's version must agree before a tag ships.

    python tools/release.py check v0.1.0     # exit 1, naming each file that disagrees
    python tools/release.py version          # the version all of them should carry

A release publishes the operator image, the trainer image and the chart under one version
(.github/workflows/release.yml). The chart's appVersion picks the image tags and the
operator's default trainer image carries a tag of its own, so a version bumped in one place
only would install images that do not exist.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _package_version(root: Path) -> str:
    text = (root / "operator" / "kubetune" / "__init__.py").read_text()
    found = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    return found.group(1) if found else "(none)"


def _default_trainer_tag(root: Path) -> str:
    text = (root / "operator" / "kubetune" / "settings.py").read_text()
    found = re.search(r'trainer_image: str = "[^":]+:([^"]+)"', text)
    return found.group(1) if found else "(none)"


def versions(root: Path = ROOT) -> dict[str, str]:
    """Where the version is written (in the tree at `root`) -> what it says there."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    chart = yaml.safe_load((root / "charts" / "kubetune" / "Chart.yaml").read_text())
    return {
        "pyproject.toml [project] version": str(pyproject["project"]["version"]),
        "operator/kubetune/__init__.py __version__": _package_version(root),
        "charts/kubetune/Chart.yaml version": str(chart["version"]),
        "charts/kubetune/Chart.yaml appVersion": str(chart["appVersion"]),
        "operator/kubetune/settings.py default trainer image tag": _default_trainer_tag(root),
    }


def check(tag: str, root: Path = ROOT) -> list[str]:
    """What disagrees with the tag `vX.Y.Z` (empty: ready to release)."""
    if not re.fullmatch(r"v\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?", tag):
        return [f"tag {tag!r} is not of the form vMAJOR.MINOR.PATCH[-PRERELEASE]"]
    wanted = tag[1:]
    return [f"{where} is {found!r}, the tag says {wanted!r}: set it to {wanted!r}"
            for where, found in versions(root).items() if found != wanted]


def main(argv: list[str]) -> int:
    if argv[:1] == ["version"] and len(argv) == 1:
        found = sorted(set(versions().values()))
        print(found[0] if len(found) == 1 else "mismatch: " + ", ".join(found))
        return 0 if len(found) == 1 else 1
    if argv[:1] == ["check"] and len(argv) == 2:
        problems = check(argv[1])
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print(f"{argv[1]}: every version agrees")
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
