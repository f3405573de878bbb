"""A tiny real HF Trainer run on the CPU whose 3 labels are independent of the inputs: the
model can only learn the uniform guess, so the train loss sits at ln 3. Each checkpoint holds
the model's config.json (save_pretrained) next to trainer_state.json.
Usage: python train_hf_chance.py OUTPUT_DIR"""

import sys

import torch
from tiny_bert import TokenLabels, cpu_args, tiny_bert
from transformers import Trainer

out = sys.argv[1]
torch.manual_seed(0)
g = torch.Generator().manual_seed(0)


def data(n: int) -> TokenLabels:
    labels = torch.arange(n) % 3  # balanced, so the best the model can do is ln 3
    return TokenLabels(torch.randint(5, 50, (n, 12), generator=g), labels[torch.randperm(n)])


args = cpu_args(
    out,
    max_steps=240,
    per_device_eval_batch_size=64,
    eval_steps=40,
    logging_steps=10,
    save_steps=120,
    learning_rate=1e-3,
)
trainer = Trainer(
    model=tiny_bert(num_labels=3), args=args, train_dataset=data(3000), eval_dataset=data(300)
)
trainer.train()
