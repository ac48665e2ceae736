"""``tunestack models``: every catalog model, what it tunes and the smallest G2 machine that
serves it (also the README's models table: ``tunestack models --format markdown``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from infra import catalog


def register(sub: Any) -> None:
    """Adds ``models``."""
    p = sub.add_parser(
        "models", help="list the tunable models: modes, sequence length, modalities, machine"
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "markdown"),
        default="text",
        help="text (default), json, or markdown (the README table)",
    )
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    """Prints the catalog in the chosen format; always exit 0."""
    rows = model_rows()
    if args.format == "json":
        print(json.dumps({"models": rows}, indent=2))
    elif args.format == "markdown":
        print(markdown_table(rows), end="")
    else:
        print(_text(rows), end="")
    return 0


def model_rows() -> list[dict[str, Any]]:
    """One JSON-able row per catalog model, in catalog order."""
    rows = []
    for m in catalog.MODELS.values():
        smallest = catalog.smallest_machine(m)
        rows.append(
            {
                "id": m.id,
                "name": m.display_name,
                "tuning_modes": list(m.tuning_modes),
                "max_seq_length": m.max_seq_length,
                "modalities": list(m.modalities),
                "parameters": m.parameters,
                "bf16_weights_gb": round(m.bf16_weights_gb, 1),
                "smallest_machine": smallest.name if smallest else None,
                "accelerators": (
                    f"{smallest.accelerator_count} x {smallest.accelerator_type}"
                    if smallest
                    else None
                ),
            }
        )
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The README's models table (a test keeps README.md equal to it)."""
    out = [
        "| Model id | Modes | Max sequence | Modalities | Parameters | Smallest G2 machine |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| `{r['id']}` | {', '.join(r['tuning_modes'])} | {r['max_seq_length']} | "
            f"{', '.join(r['modalities'])} | {_params(r['parameters'])} | {_machine(r)} |"
        )
    return "\n".join(out) + "\n"


def _text(rows: list[dict[str, Any]]) -> str:
    header = ("MODEL ID", "MODES", "MAX SEQ", "MODALITIES", "PARAMS", "SMALLEST G2 MACHINE")
    table = [header] + [
        (
            r["id"],
            ",".join(r["tuning_modes"]),
            str(r["max_seq_length"]),
            ",".join(r["modalities"]),
            _params(r["parameters"]),
            _machine(r),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
        for row in table
    )


def _params(n: float) -> str:
    return f"{n / 1e9:.1f}B" if n < 100e9 else f"{n / 1e9:.0f}B"


def _machine(r: dict[str, Any]) -> str:
    if r["smallest_machine"] is None:
        return f"none (bf16 weights {r['bf16_weights_gb']} GB exceed every G2 machine)"
    return f"{r['smallest_machine']} ({r['accelerators']})"
