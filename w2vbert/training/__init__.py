"""The one training loop of pre-training and fine-tuning: Trainer, optimiser and schedule, DDP, metrics, the two tasks."""
