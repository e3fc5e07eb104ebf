"""From a run's predictions alone: ensembles, per-fold accuracies, tables, confusion matrices, report."""
