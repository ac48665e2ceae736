"""Configuration: flags, config files, user errors, and the catalog's sequence lengths."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from trainer.__main__ import main
from trainer.config import (
    ConfigError,
    default_max_seq_length,
    parse,
)

from infra.catalog import MODELS

# HF model_type of each catalog architecture (what config.json says for those weights).
MODEL_TYPE = {
    "LlamaForCausalLM": "llama",
    "Gemma3ForCausalLM": "gemma3_text",
    "Gemma3ForConditionalGeneration": "gemma3",
    "Qwen3ForCausalLM": "qwen3",
    "Llama4ForConditionalGeneration": "llama4",
    "Llama4ForCausalLM": "llama4_text",
}


def test_default_max_seq_length_agrees_with_catalog() -> None:
    for m in MODELS.values():
        assert m.hf_architecture in MODEL_TYPE, m.hf_architecture
        assert default_max_seq_length(MODEL_TYPE[m.hf_architecture]) == m.max_seq_length, m.id


def test_flags_override_config_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("base-model: m\ntrain_data: t.jsonl\noutput_dir: o\nepochs: 3\npacking: true\n")
    cfg = parse(["--config", str(f), "--epochs", "5", "--tuning-mode", "FULL"])
    assert (cfg.epochs, cfg.packing, cfg.tuning_mode, cfg.base_model) == (5, True, "FULL", "m")
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"base_model": "m", "train_data": "t", "output_dir": "o"}))
    assert parse(["--config", str(j)]).epochs == 1


def test_learning_rate_defaults_and_multiplier() -> None:
    req = ["--base-model", "m", "--train-data", "t", "--output-dir", "o"]
    assert parse(req).peak_learning_rate() == pytest.approx(1e-4)
    assert parse([*req, "--tuning-mode", "FULL"]).peak_learning_rate() == pytest.approx(1e-5)
    cfg = parse([*req, "--learning-rate-multiplier", "2"])
    assert cfg.peak_learning_rate() == pytest.approx(2e-4)


def test_all_errors_reported_together(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        "base_modle: m\nepochs: 0\nadapter_size: 3\nlearning_rate: 1\nlearning_rate_multiplier: 2\n"
    )
    with pytest.raises(ConfigError) as e:
        parse(["--config", str(f)])
    msg = str(e.value)
    assert "did you mean 'base_model'" in msg
    for field in ("epochs", "adapter_size", "learning_rate", "train_data"):
        assert f"{field}:" in msg


def test_cli_user_error_exit_1_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--base-model", "m", "--train-data", "t"]) == 1
    err = capsys.readouterr().err
    assert "error: output_dir: is required" in err and "Traceback" not in err
    assert (
        main(
            [
                "--base-model",
                str(tmp_path / "nope"),
                "--train-data",
                "t",
                "--output-dir",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )
    assert "not found" in capsys.readouterr().err


def test_cli_bad_dataset_exit_1_nothing_written(
    tmp_path: Path, tiny: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n{"messages": [{"role": "usr"}]}\n')
    out = tmp_path / "out"
    rc = main(["--base-model", str(tiny("llama")), "--train-data", str(data),
               "--output-dir", str(out), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and f"{data}:2:1: error[" in err and "Traceback" not in err
    assert not out.exists()
