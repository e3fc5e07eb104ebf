"""A run from config to finished packs: folds and plan, pack layout, Ray / inline / Ray Train executors, progress."""
