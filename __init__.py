"""partfer: part-based, landmark-aware ensemble transfer learning for facial expression recognition,
orchestrated on Ray (Wadhawan & Gandhi).

One import name, rooms by concern, data flowing one way (no package imports one above it):

    atomicio      atomic writes and safe loads, used by every room below
    data_prep     raw face images -> prepared Parquet (CLAHE, face crops, 68 landmarks)
    models        the paper's networks and the packed multi-model network (models.kernels: GPU kernels)
    orchestrator  config -> plan -> packs trained on Ray -> checkpoints and predictions
    results       a run's files -> ensembles, Tables I-III, figures, report
    cli           the `partfer` command

Importing this package imports neither Ray nor torch; `from partfer import Predictor` (prediction
with an exported model, orchestrator.inference.predict) loads torch when it is asked for.
"""

# Names importable from the top (`from partfer import Predictor`), each loaded on first use so that
# `import partfer` stays free of torch.
_LAZY = {"Predictor": "partfer.orchestrator.inference.predict",
         "PredictError": "partfer.orchestrator.inference.predict"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'partfer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
