"""The README is what a new user reads first: every setting, command and job type it must
name is checked here against the code, so the two cannot drift apart."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from queue_core.cli import contracts_table
from queue_core.cli.exits import EXIT_CODES
from queue_core.cli.main import build_parser
from queue_core.contracts import load_contracts
from queue_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def env_name(field: str) -> str:
    return {"database_url": "DATABASE_URL", "redis_url": "REDIS_URL"}.get(
        field, f"HYBRIDQ_{field.upper()}"
    )


def test_readme_documents_every_setting() -> None:
    missing = [env_name(f) for f in Settings.model_fields if f"`{env_name(f)}`" not in README]
    assert not missing, f"settings missing from the README's configuration table: {missing}"


def test_readme_documents_every_command() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    commands = sorted(sub.choices)  # type: ignore[arg-type]
    missing = [c for c in commands if f"hybridq {c}" not in README]
    assert not missing, f"commands missing from the README: {missing}"


def test_readme_contract_table_is_the_one_hybridq_contracts_generates() -> None:
    """Regenerate it with `hybridq contracts --handlers handlers --format markdown`."""
    generated = contracts_table.markdown(load_contracts("handlers"))
    begin, end = "<!-- contracts:begin -->\n", "\n<!-- contracts:end -->"
    assert begin in README and end in README
    in_readme = README[README.index(begin) + len(begin) : README.index(end)]
    assert in_readme == generated, "the README's contract table is stale: regenerate it"


def test_readme_sections_a_new_user_needs() -> None:
    for heading in ("## The two commands", "## The HTTP API", "## Guarantees",
                    "## Configuration", "## Dependencies and why"):
        assert heading in README
    assert "make up" in README and "make test" in README


def test_readme_exit_code_table_is_the_one_the_command_line_uses() -> None:
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", README, flags=re.M)
    assert {int(code): meaning for code, meaning in rows} == EXIT_CODES


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    """A parser's options and those of its own subcommands (``token new --admin``)."""
    found = {o for a in parser._actions for o in a.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                found |= options_of(nested)
    return found


def options_of_every_command() -> dict[str, set[str]]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {name: options_of(p) for name, p in sub.choices.items()}  # type: ignore[union-attr]


def test_docs_name_only_options_their_commands_have() -> None:
    """`hybridq api --workers N` in docs/deploy.md named an option that never existed."""
    options = options_of_every_command()
    docs = [README, *(p.read_text() for p in (ROOT / "docs").rglob("*.md"))]
    spans = [s for text in docs for s in re.findall(r"`hybridq ([a-z]+)([^`]*)`", text)]
    assert len(spans) > 20, "found too few `hybridq ...` spans to check"
    unknown = [
        f"hybridq {command}{rest}"
        for command, rest in spans
        if command in options
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", rest)
        if flag not in options[command]
    ]
    assert not unknown, f"docs name options their command lacks: {unknown}"
