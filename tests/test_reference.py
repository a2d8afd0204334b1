"""docs/spec-reference.md is what `python -m workers.reference` generates from the code that validates specs."""
from pathlib import Path

from workers.reference import markdown
from workers.spec import registry

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "spec-reference.md"


def test_committed_reference_is_up_to_date():
    assert REFERENCE.read_text() == markdown(), \
        "docs/spec-reference.md is stale: run `.venv/bin/python -m workers.reference > docs/spec-reference.md`"


def test_every_registered_class_and_argument_is_documented():
    text = REFERENCE.read_text()
    for kind in registry().values():
        for name, entry in kind.items():
            row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
            assert all(f"`{a.name}`" in row for a in entry.args), (name, row)
