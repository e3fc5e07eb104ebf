"""Trained models scored beyond their own test fold: cross-data-set tests, Grad-CAM and landmark analysis."""
