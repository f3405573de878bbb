"""PyTorch Lightning: a callback.

    from watchrun.integrations.lightning import WatchrunCallback
    trainer = L.Trainer(callbacks=[WatchrunCallback(label_names=["cat", "dog"])])

Return `{"preds": logits_or_ids, "labels": y}` (or `(preds, labels)`) from `validation_step`
and the callback logs per-class metrics and prediction diversity at each validation through
`self.log_dict` (so every Lightning logger sees them) and into `watchrun.jsonl`. A stop request
from watchrun saves a checkpoint and sets `trainer.should_stop`, agreed across ranks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np

from watchrun.integrations import RunLogger
from watchrun.metrics import classification


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if hasattr(v, "item"):
            try:
                v = v.item()
            except (ValueError, RuntimeError):
                continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out


class WatchrunCallback(pl.Callback):
    def __init__(self, label_names: Sequence[str] | None = None, prefix: str = "val_") -> None:
        self.label_names = label_names
        self.prefix = prefix
        self.logger: RunLogger | None = None
        self._preds: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self.stopped_at: int | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.logger is None:
            run_dir = trainer.log_dir or trainer.default_root_dir
            self.logger = RunLogger(
                run_dir,
                max_steps=trainer.max_steps
                if trainer.max_steps and trainer.max_steps > 0
                else None,
                max_epochs=trainer.max_epochs,
                checkpoint_dir=os.path.join(run_dir, "checkpoints"),
                world_size=trainer.world_size,
                rank=trainer.global_rank,
                library="lightning",
            )

    def on_validation_epoch_start(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
        self._preds, self._labels = [], []

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:  # type: ignore[no-untyped-def]
        if isinstance(outputs, dict) and "preds" in outputs and "labels" in outputs:
            preds, labels = outputs["preds"], outputs["labels"]
        elif isinstance(outputs, (tuple, list)) and len(outputs) == 2:
            preds, labels = outputs
        else:
            return
        p = preds.detach().cpu().numpy()
        self._preds.append(p.argmax(-1) if p.ndim > 1 else p)
        self._labels.append(labels.detach().cpu().numpy())

    def on_validation_epoch_end(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
        if trainer.sanity_checking:
            return
        metrics: dict[str, Any] = {}
        if self._preds:
            metrics = classification(
                np.concatenate(self._preds),
                np.concatenate(self._labels),
                label_names=self.label_names,
                prefix=self.prefix,
            )
            pl_module.log_dict(metrics, sync_dist=True)
        if self.logger:
            self.logger.log(
                trainer.global_step,
                {**_numbers(trainer.callback_metrics), **metrics, "epoch": trainer.current_epoch},
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if self.logger is None:
            return
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self.logger.log(
                trainer.global_step,
                {**_numbers(trainer.callback_metrics), "epoch": trainer.current_epoch},
            )
        asked = self.logger.stop_requested() if trainer.global_rank == 0 else False
        if trainer.strategy.reduce_boolean_decision(asked, all=False) and self.stopped_at is None:
            self.stopped_at = trainer.global_step
            path = os.path.join(
                self.logger.run_dir, "checkpoints", f"stop-step={trainer.global_step}.ckpt"
            )
            trainer.save_checkpoint(path)
            trainer.should_stop = True
            self.logger.stopped(trainer.global_step, path)
