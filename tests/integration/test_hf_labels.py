"""The class count of an HF run comes from its writer's own record: the model's config.json that
Trainer saves (save_pretrained) in each checkpoint next to trainer_state.json. A real tiny
Trainer run with 3 labels independent of the inputs sits at ln 3, which loss_at_chance can only
call when it knows K = 3."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from watchrun.engine import Engine  # noqa: E402
from watchrun.model import Severity  # noqa: E402

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def chance_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "shuffled"
    subprocess.run(
        [sys.executable, str(HERE / "train_hf_chance.py"), str(out)],
        check=True,
        timeout=600,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return out


def checked(path: Path) -> Engine:
    engine = Engine([str(path)], use_watchdog=False)
    engine.check()
    return engine


def test_three_labels_at_ln3_are_called_at_chance(chance_run: Path) -> None:
    engine = checked(chance_run)
    run = engine.store.runs["shuffled"]
    assert run.hparams["num_labels"] == 3
    alerts = [a for a in engine.store.alerts_for("shuffled") if a.severity is Severity.WARNING]
    chance = [a for a in alerts if a.detector == "loss_at_chance"]
    assert len(chance) == 1 and chance[0].evidence["classes"] == 3
    assert chance[0].evidence["chance"] == pytest.approx(math.log(3))
    assert "ln(3)" in chance[0].message


def one_checkpoint(src: Path, dest: Path, model: object) -> Path:
    """The real run's last checkpoint trainer_state.json, next to `model`'s saved config."""
    ckpt = dest / "checkpoint-240"
    ckpt.mkdir(parents=True)
    shutil.copy(src / "checkpoint-240" / "trainer_state.json", ckpt)
    model.save_pretrained(ckpt)  # type: ignore[attr-defined]
    return dest


def test_only_a_single_label_classifier_gives_its_label_count(
    chance_run: Path, tmp_path: Path
) -> None:
    """A classifier saved before any forward (no problem_type yet) or a token classifier: their
    labels. A regression, a multi-label model (one sigmoid per label) or a masked LM: no K."""
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        BertForSequenceClassification,
        BertForTokenClassification,
    )

    def config(**kw: object) -> BertConfig:
        return BertConfig(
            vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, **kw
        )

    models = {
        "five": (BertForSequenceClassification(config(num_labels=5)), 5),
        "tokens": (BertForTokenClassification(config(num_labels=7)), 7),
        "regression": (
            BertForSequenceClassification(config(num_labels=1, problem_type="regression")),
            None,
        ),
        "multilabel": (
            BertForSequenceClassification(
                config(num_labels=4, problem_type="multi_label_classification")
            ),
            None,
        ),
        "mlm": (BertForMaskedLM(config(num_labels=3)), None),
    }
    for name, (model, _) in models.items():
        one_checkpoint(chance_run, tmp_path / name, model)
    engine = Engine([str(tmp_path)], use_watchdog=False)
    engine.load()
    got = {name: engine.store.runs[name].hparams.get("num_labels") for name in models}
    assert got == {name: k for name, (_, k) in models.items()}


@pytest.mark.parametrize("kind", ["fifo", "junk", "huge"])
def test_a_bad_config_is_said_and_the_run_still_read(
    chance_run: Path, tmp_path: Path, kind: str
) -> None:
    """A FIFO (a read would block), junk bytes, a file over the size bound: a warning naming
    the file, no class count, every point of trainer_state.json still read, no hang."""
    ckpt = tmp_path / "run" / "checkpoint-240"
    ckpt.mkdir(parents=True)
    shutil.copy(chance_run / "checkpoint-240" / "trainer_state.json", ckpt)
    config = ckpt / "config.json"
    if kind == "fifo":
        os.mkfifo(config)
    elif kind == "junk":
        config.write_bytes(b'{"id2label": {"0": \xff\xfe')
    else:
        real = (chance_run / "checkpoint-240" / "config.json").read_text()
        config.write_text(real[:-2] + ', "pad": "' + "x" * (5 << 20) + '"}')
    engine = Engine([str(tmp_path)], use_watchdog=False)
    engine.load()
    run = engine.store.runs["run"]
    assert "num_labels" not in run.hparams
    assert any("checkpoint-240/config.json: not read" in w for w in run.warnings)
    assert len(run.series["loss"].steps) == 24
