"""From a run's files alone: ensembles, per-fold accuracies, Tables I-III, confusion matrices,
the landmark before/after study, Grad-CAM and complexity figures, report.md and report.html."""
