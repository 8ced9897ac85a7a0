"""The human-speech benchmark is a wrapper over ``elp-evaluate --suite human --baselines``."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmarks.human_speech import evaluate_argv, main
from training.evaluate import build_parser


def test_the_wrapper_asks_elp_evaluate_for_the_human_suite_with_baselines(tmp_path: Path) -> None:
    args = argparse.Namespace(backbone="bb", data=tmp_path, baseline_clips=7, device="cpu", adapter=Path("asr"),
                              verify_adapter=Path("verify"))
    argv = evaluate_argv(args, tmp_path / "x.json")
    assert argv[:3] == ["--suite", "human", "--baselines"] and argv[-2:] == ["asr", "verify"]
    parsed = build_parser().parse_args(argv)  # every option it passes is one elp-evaluate knows
    assert parsed.suite == ["human"] and parsed.baselines == [] and parsed.baseline_clips == 7


def test_an_unbuilt_suite_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="training.suites.human"):
        main(["--data", str(tmp_path)])
