"""A tiny real HF Trainer run on the CPU (model built from a config, data made here).
Usage: python train_hf.py OUTPUT_DIR MAX_STEPS MINORITY_SHARE [EVAL_STEPS]"""

import sys

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from watchrun.integrations.hf import WatchrunCallback, compute_metrics

out, max_steps, minority = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
eval_steps = int(sys.argv[4]) if len(sys.argv) > 4 else 10
torch.manual_seed(0)
g = torch.Generator().manual_seed(0)


class Data(torch.utils.data.Dataset):
    def __init__(self, n):
        self.labels = (torch.rand(n, generator=g) < minority).long()  # class 1 is the minority
        noise = torch.randint(5, 50, (n, 12), generator=g)
        noise[:, 0] = torch.where(
            torch.rand(n, generator=g) < 0.1, self.labels + 1, 3
        )  # a weak signal
        self.ids = noise

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {
            "input_ids": self.ids[i],
            "attention_mask": torch.ones(12, dtype=torch.long),
            "labels": self.labels[i],
        }


model = BertForSequenceClassification(
    BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=2,
    )
)
args = TrainingArguments(
    output_dir=out,
    max_steps=max_steps,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=64,
    eval_strategy="steps",
    eval_steps=eval_steps,
    logging_steps=5,
    save_steps=10_000,
    report_to=[],
    learning_rate=1e-3,
    use_cpu=True,
    disable_tqdm=True,
    seed=0,
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=Data(400),
    eval_dataset=Data(200),
    compute_metrics=compute_metrics(["majority", "minority"]),
    callbacks=[WatchrunCallback()],
)
trainer.train()
trainer.evaluate()
pred = trainer.predict(Data.__new__(Data) if False else trainer.eval_dataset)
torch.save(
    {"preds": pred.predictions.argmax(-1), "labels": pred.label_ids}, f"{out}/final_predictions.pt"
)
