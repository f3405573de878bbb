"""A tiny real HF Trainer run on the CPU (model built from a config, data made here).
Usage: python train_hf.py OUTPUT_DIR MAX_STEPS MINORITY_SHARE [EVAL_STEPS]"""

import sys

import torch
from tiny_bert import TokenLabels, cpu_args, tiny_bert
from transformers import Trainer

from watchrun.integrations.hf import WatchrunCallback, compute_metrics

out, max_steps, minority = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
eval_steps = int(sys.argv[4]) if len(sys.argv) > 4 else 10
torch.manual_seed(0)
g = torch.Generator().manual_seed(0)


def data(n: int) -> TokenLabels:
    labels = (torch.rand(n, generator=g) < minority).long()  # class 1 is the minority
    ids = torch.randint(5, 50, (n, 12), generator=g)
    ids[:, 0] = torch.where(torch.rand(n, generator=g) < 0.1, labels + 1, 3)  # a weak signal
    return TokenLabels(ids, labels)


model = tiny_bert()
args = cpu_args(
    out,
    max_steps=max_steps,
    per_device_eval_batch_size=64,
    eval_steps=eval_steps,
    logging_steps=5,
    save_steps=10_000,
    learning_rate=1e-3,
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=data(400),
    eval_dataset=data(200),
    compute_metrics=compute_metrics(["majority", "minority"]),
    callbacks=[WatchrunCallback()],
)
trainer.train()
trainer.evaluate()
pred = trainer.predict(trainer.eval_dataset)
torch.save(
    {"preds": pred.predictions.argmax(-1), "labels": pred.label_ids}, f"{out}/final_predictions.pt"
)
