"""What the HF Trainer scripts share: a BERT classifier small enough to train on the CPU in
seconds (built from a config, no download) and a dataset of token-id sequences with labels.
Imported by the scripts as a sibling module (they run as `python tests/integration/<script>.py`)."""

import torch
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments


class TokenLabels(torch.utils.data.Dataset):
    """Sequences of token ids (one row each) and their labels, as the Trainer feeds them."""

    def __init__(self, ids: torch.Tensor, labels: torch.Tensor) -> None:
        self.ids, self.labels = ids, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.ids[i],
            "attention_mask": torch.ones(self.ids.shape[1], dtype=torch.long),
            "labels": self.labels[i],
        }


def tiny_bert(
    hidden_size: int = 16, intermediate_size: int = 32, num_labels: int = 2
) -> BertForSequenceClassification:
    """A one-layer, two-head BERT over a 50-token vocabulary, for `num_labels` classes."""
    return BertForSequenceClassification(
        BertConfig(
            vocab_size=50,
            hidden_size=hidden_size,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=intermediate_size,
            num_labels=num_labels,
        )
    )


def cpu_args(output_dir: str, **settings: object) -> TrainingArguments:
    """TrainingArguments for a quiet, seeded CPU run evaluated every `eval_steps` (batches of 16,
    no progress bar, no reporting): `settings` add to these or replace them."""
    quiet: dict[str, object] = {
        "per_device_train_batch_size": 16,
        "eval_strategy": "steps",
        "report_to": [],
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    return TrainingArguments(output_dir=output_dir, **{**quiet, **settings})
