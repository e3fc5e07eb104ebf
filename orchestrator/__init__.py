"""Config -> plan of training tasks -> packs scheduled on Ray (or inline) -> checkpoints + predictions.

Importing this package imports neither Ray nor torch; the modules that need them do.
"""
