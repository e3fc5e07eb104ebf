"""One pack's training: batches and augmentation, the step, the epoch loop, per-epoch metrics."""
