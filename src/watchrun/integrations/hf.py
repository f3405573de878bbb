"""HF Trainer: one callback, one compute_metrics.

    from watchrun.integrations.hf import WatchrunCallback, compute_metrics
    trainer = Trainer(..., compute_metrics=compute_metrics(["negative", "positive"]),
                      callbacks=[WatchrunCallback()])

Every log and evaluation goes to `watchrun.jsonl` in the output dir (and, as usual, to whatever
`report_to` names); a run card tells watchrun the pid and the planned steps; watchrun's "save and
stop" makes the Trainer save a checkpoint and stop at the next step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from watchrun.integrations import RunLogger
from watchrun.metrics import classification


def compute_metrics(label_names: Sequence[str] | None = None):  # type: ignore[no-untyped-def]
    """An HF `compute_metrics` with per-class metrics and prediction diversity."""

    def compute(eval_pred: Any) -> dict[str, Any]:
        return classification(eval_pred, label_names=label_names)

    return compute


class WatchrunCallback(TrainerCallback):
    def __init__(self) -> None:
        self.logger: RunLogger | None = None
        self.stop_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.logger = RunLogger(
            args.output_dir,
            max_steps=state.max_steps,
            max_epochs=int(args.num_train_epochs),
            checkpoint_dir=args.output_dir,
            world_size=args.world_size,
            rank=0 if state.is_world_process_zero else 1,
            library="transformers",
        )

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if self.logger and logs:
            self.logger.log(state.global_step, {k: v for k, v in logs.items() if k != "total_flos"})

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if self.logger and self.stop_step is None and self.logger.stop_requested():
            self.stop_step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if self.logger and self.stop_step is not None:
            import os

            self.logger.stopped(
                state.global_step, os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            )
