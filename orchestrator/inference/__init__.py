"""Trained models for users: export to a model folder, predict on photos and videos, annotated output."""
