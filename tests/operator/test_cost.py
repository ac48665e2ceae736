"""Cost estimates in validate, plan (text/json/markdown) and the plan diff: training tokens x
the price per million, machine price x replicas, the delta of a change; figures only where a
price is known (the spec's prices: or the table), and always labelled as estimates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from infra import cost
from infra.cli import main

REPO = Path(__file__).resolve().parents[2]
PRICES = (
    "prices:\n"
    '  tuning_per_million_tokens: {"meta/llama3_1@llama-3.1-8b-instruct": 10.0}\n'
    "  machine_per_hour: {g2-standard-12: 2.5}\n"
    "  source: contract 2026\n"
)


def _spec(tmp_path: Path, name: str, extra: str = "", epochs: int = 3, replicas: int = 1) -> Path:
    if not (tmp_path / "data").exists():
        shutil.copytree(REPO / "specs" / "data" / "support", tmp_path / "data" / "support")
    text = (REPO / "specs" / "llama.yaml").read_text().replace("epochs: 3", f"epochs: {epochs}")
    text += f"    min_replicas: {replicas}\n    max_replicas: {replicas + 1}\n" + extra
    path = tmp_path / name
    path.write_text(text)
    return path


def test_validate_json_and_text_show_the_job_cost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, "a.yaml", PRICES)
    assert main(["validate", str(spec), "--format", "json"]) == 0
    job = json.loads(capsys.readouterr().out)["jobs"][0]
    assert job["estimated_cost_usd"] == round(job["training_tokens"] / 1e6 * 10.0, 2)
    assert main(["validate", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "estimated cost $" in out and "at $10.00/1M; contract 2026" in out


def test_plan_json_text_markdown_carry_the_estimates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, "a.yaml", PRICES, replicas=2)
    assert main(["plan", str(spec), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)["cost"]
    assert doc["estimate"] is True and doc["currency"] == "USD"
    (ep,) = doc["endpoints"]
    assert (ep["usd_per_hour_min"], ep["usd_per_hour_max"]) == (5.0, 7.5)  # 2.5/h x 2..3
    assert doc["serving_usd_per_hour_min"] == 5.0
    assert doc["training_usd"] == doc["jobs"][0]["usd"] is not None
    assert main(["plan", str(spec)]) == 0
    text = capsys.readouterr().out
    assert "estimated cost $5.00-$7.50/hour (g2-standard-12 at $2.50/h x 2-3 replicas" in text
    assert "an estimate" in text
    assert main(["plan", str(spec), "--format", "markdown"]) == 0
    assert "| Cost (estimate, list prices) | Figure |" in capsys.readouterr().out


def test_without_a_price_no_figure_is_invented(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, "a.yaml")
    assert main(["plan", str(spec)]) == 0
    text = capsys.readouterr().out
    if not cost.TUNING_PER_MILLION_TOKENS and not cost.MACHINE_PER_HOUR:
        assert "estimated cost $" not in text and "unknown" in text
    assert cost.NO_PRICE in text


def test_diff_shows_the_cost_delta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _spec(tmp_path, "old.yaml", PRICES, epochs=3, replicas=1)
    new = _spec(tmp_path, "new.yaml", PRICES, epochs=6, replicas=2)
    assert main(["plan", str(old), "--format", "json"]) == 0
    old_doc = json.loads(capsys.readouterr().out)
    (tmp_path / "old.json").write_text(json.dumps(old_doc))
    assert main(["plan", str(new), "--diff-against", str(tmp_path / "old.json")]) in (0, 1)
    text = capsys.readouterr().out
    t = old_doc["cost"]["training_usd"]
    assert f"training ${t:,.2f} -> ${2 * t:,.2f} (+${t:,.2f})" in text
    assert "serving $2.50/h -> $5.00/h (+$2.50/h)" in text


def test_table_figures_name_their_source_and_date() -> None:
    for table in (cost.TUNING_PER_MILLION_TOKENS, cost.MACHINE_PER_HOUR):
        for price in table.values():
            assert price.source.startswith("https://cloud.google.com/") and len(price.date) == 10
    assert cost.cost_delta(None, {"training_usd": 1.0})["training_usd"]["delta"] is None
