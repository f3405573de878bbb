"""Keras 3: a callback.

    from watchrun.integrations.keras import WatchrunCallback
    callback = WatchrunCallback("runs/exp1", validation_data=(xv, yv), label_names=names)
    model.fit(x, y, validation_data=(xv, yv), callbacks=[callback])

At each epoch end it adds per-class metrics and prediction diversity (computed on
`validation_data`) to the epoch's logs, so CSVLogger, TensorBoard and the rest record them too,
and writes them to `watchrun.jsonl`. A stop request from watchrun saves the model and sets
`model.stop_training`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from watchrun.integrations import RunLogger
from watchrun.metrics import classification


class WatchrunCallback(keras.callbacks.Callback):
    def __init__(
        self,
        run_dir: str,
        validation_data: tuple[Any, Any] | None = None,
        label_names: Sequence[str] | None = None,
        prefix: str = "val_",
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.validation_data = validation_data
        self.label_names = label_names
        self.prefix = prefix
        self.logger: RunLogger | None = None
        self.steps = 0
        self.stopped_at: int | None = None

    def on_train_begin(self, logs=None) -> None:  # type: ignore[no-untyped-def]
        self.logger = RunLogger(
            self.run_dir,
            max_epochs=self.params.get("epochs"),
            checkpoint_dir=self.run_dir,
            library="keras",
        )

    def on_train_batch_end(self, batch, logs=None) -> None:  # type: ignore[no-untyped-def]
        self.steps += 1
        if self.logger and self.stopped_at is None and self.logger.stop_requested():
            self.stopped_at = self.steps
            path = os.path.join(self.run_dir, f"stop-step-{self.steps}.keras")
            self.model.save(path)
            self.model.stop_training = True
            self.logger.stopped(self.steps, path)

    def on_epoch_end(self, epoch, logs=None) -> None:  # type: ignore[no-untyped-def]
        logs = logs if logs is not None else {}
        if self.validation_data is not None:
            x, y = self.validation_data
            probs = np.asarray(self.model.predict(x, verbose=0))
            metrics = classification(
                probs, np.asarray(y).reshape(-1), label_names=self.label_names, prefix=self.prefix
            )
            logs.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        if self.logger:
            self.logger.log(
                epoch,
                {k: float(v) for k, v in logs.items() if isinstance(v, (int, float, np.floating))},
            )
