"""partfer: part-based, landmark-aware ensemble transfer learning for facial expression recognition,
orchestrated on Ray (Wadhawan & Gandhi).

One import name, rooms by concern, data flowing one way (no package imports one above it):

    atomicio      atomic writes and safe loads, used by every room below
    data_prep     raw face images -> prepared Parquet (CLAHE, face crops, 68 landmarks)
    models        the paper's networks and the packed multi-model network (models.kernels: GPU kernels)
    orchestrator  config -> plan -> packs trained on Ray -> checkpoints and predictions
    results       a run's files -> ensembles, Tables I-III, figures, report
    cli           the `partfer` command

Importing this package imports neither Ray nor torch.
"""
