"""The LoRA trainer job, batching, checkpoints, distributed set-up, the trainer process."""
