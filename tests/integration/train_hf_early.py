"""A tiny real HF Trainer run on the CPU that early-stops: labels independent of the inputs, so
the eval loss stops improving while the model memorises; EarlyStoppingCallback(patience 2).
Usage: python train_hf_early.py OUTPUT_DIR"""

import sys

import torch
from tiny_bert import TokenLabels, cpu_args, tiny_bert
from transformers import EarlyStoppingCallback, Trainer

out = sys.argv[1]
torch.manual_seed(0)
g = torch.Generator().manual_seed(0)


def data(n: int) -> TokenLabels:
    labels = torch.randint(0, 2, (n,), generator=g)
    return TokenLabels(torch.randint(5, 50, (n, 12), generator=g), labels)


model = tiny_bert(hidden_size=32, intermediate_size=64)
args = cpu_args(
    out,
    max_steps=400,
    per_device_eval_batch_size=64,
    eval_steps=10,
    save_strategy="steps",
    save_steps=10,
    logging_steps=5,
    load_best_model_at_end=True,
    metric_for_best_model="eval_loss",
    save_total_limit=2,
    learning_rate=3e-3,
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=data(64),
    eval_dataset=data(128),
    callbacks=[EarlyStoppingCallback(early_stopping_patience=2)],
)
result = trainer.train()
trainer.save_state()
trainer.save_metrics("train", result.metrics)
