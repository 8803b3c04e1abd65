"""What ``hybridq contracts`` prints: a handlers module's job types and periodic jobs, as a
plain table, JSON, or the Markdown the README's contract table is (tests/unit/test_docs.py
holds the README to ``markdown(load_contracts("handlers"))``). Pure: no I/O."""

from __future__ import annotations

import json

from queue_core.contracts import ContractRegistry, shape_of

HEADER = ("job_type", "input shape", "timeout", "handler", "returns")


def rows(registry: ContractRegistry) -> list[tuple[str, ...]]:
    return [
        (
            c.job_type,
            shape_of(c.input_model),
            f"{c.timeout:g} s" if c.timeout is not None else "none",
            c.handler_name,
            shape_of(c.output_model) if c.output_model else "dict or None",
        )
        for c in registry
    ]


def plain(registry: ContractRegistry) -> str:
    table = [HEADER, *rows(registry)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def markdown(registry: ContractRegistry) -> str:
    """The job types as a Markdown table, then the periodic jobs, if any, as another."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(f"`{cell}`" for cell in row) + " |" for row in rows(registry)]
    if registry.periodic:
        lines += ["", "| periodic job | cron (UTC) | job_type | input | catch_up |"]
        lines += ["|---|---|---|---|---|"]
        for p in registry.periodic:
            policy = p.catch_up.value
            if p.catch_up_window is not None:
                policy += f" within {p.catch_up_window}"
            lines.append(
                f"| `{p.name}` | `{p.cron}` | `{p.job_type}` | `{json.dumps(p.input)}` | {policy} |"
            )
    return "\n".join(lines)


def as_json(registry: ContractRegistry) -> str:
    """Every job type with its full JSON schemas and its example input."""
    return json.dumps(
        [
            {
                "job_type": c.job_type,
                "handler": c.handler_name,
                "timeout": c.timeout,
                "input_schema": c.input_model.model_json_schema() if c.input_model else None,
                "output_schema": c.output_model.model_json_schema() if c.output_model else None,
                "example_input": c.example_input,
            }
            for c in registry
        ],
        indent=2,
    )
