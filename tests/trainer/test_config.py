"""Configuration: flags, config files, user errors, and the catalog's sequence lengths."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from trainer.__main__ import main
from trainer.config import (
    ConfigError,
    TrainConfig,
    build_parser,
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


def test_every_field_is_one_flag_with_help() -> None:
    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "extra"]
    actions = [a for a in build_parser()._actions if a.dest not in ("help", "config")]
    assert [a.dest for a in actions] == fields
    for a in actions:
        assert a.help and a.option_strings[0] == "--" + a.dest.replace("_", "-"), a.dest
    # The flags the local server and the Vertex provider pass (infra/local/trainer.py,
    # infra/vertex/jobs.py), and the booleans' --no- forms.
    flags = {s for a in actions for s in a.option_strings}
    assert {"--base-model", "--train-data", "--output-dir", "--base-model-id", "--no-progress",
            "--validation-data", "--tuning-mode", "--epochs", "--learning-rate",
            "--learning-rate-multiplier", "--adapter-size"} <= flags  # fmt: skip


def test_exclusive_flags_and_choices_are_usage_errors() -> None:
    req = ["--base-model", "m", "--train-data", "t", "--output-dir", "o"]
    for bad in (["--learning-rate", "1", "--learning-rate-multiplier", "2"], ["--dtype", "fp8"]):
        with pytest.raises(SystemExit) as e:
            parse([*req, *bad])
        assert e.value.code == 2


def test_config_file_numbers_are_type_checked(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        "base_model: m\ntrain_data: t\noutput_dir: o\n"
        "epochs: 2.5\nlog_every: x\nwarmup_ratio: x\nlearning_rate: 1\n"
    )
    with pytest.raises(ConfigError) as e:
        parse(["--config", str(f)])
    assert str(e.value).splitlines() == [
        "epochs: expected an integer, got 2.5",
        "warmup_ratio: expected a number, got 'x'",
        "log_every: expected an integer, got 'x'",
    ]
