"""Keras' own CSVLogger(append=True) under logrotate's copytruncate (issue 9 §2): it writes its
header only into an empty file when fit() begins, so after the truncation it goes on writing
rows into the emptied file with no header. The engine follows with a look after every epoch
and must hold every epoch's loss, once (the first row after the truncation is data)."""

from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

from watchrun.engine import Engine  # noqa: E402


def test_keras_csvlogger_append_after_copytruncate_loses_no_epoch(tmp_path):
    keras = pytest.importorskip("keras")
    import numpy as np

    keras.utils.set_random_seed(0)
    path = tmp_path / "training_log.csv"
    engine = Engine([str(tmp_path)], use_watchdog=False)

    class Logrotate(keras.callbacks.Callback):
        """After CSVLogger wrote the epoch's row: a look, and copytruncate after epochs 1 and 3."""

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                engine.load()
            else:
                engine.scan()
                engine.poll()
            if epoch in (1, 3):
                if (tmp_path / "training_log.csv.1").exists():
                    os.rename(tmp_path / "training_log.csv.1", tmp_path / "training_log.csv.2")
                shutil.copyfile(path, tmp_path / "training_log.csv.1")
                os.truncate(path, 0)

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.normal(size=(64, 1)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    logger = keras.callbacks.CSVLogger(str(path), append=True)
    history = model.fit(x, y, epochs=6, verbose=0, callbacks=[logger, Logrotate()])
    engine.scan()
    engine.poll()
    assert not path.read_text().startswith("epoch")  # the generation after truncation: no header
    got = [(s, v) for s, v in zip(*_series(engine, "training_log.csv", "loss"), strict=True)]
    assert [s for s, _ in got] == list(range(6))
    assert [v for _, v in got] == pytest.approx(history.history["loss"], rel=1e-6)


def _series(engine: Engine, key: str, name: str):
    s = engine.store.runs[key].series[name]
    return s.steps.tolist(), s.values.tolist()
