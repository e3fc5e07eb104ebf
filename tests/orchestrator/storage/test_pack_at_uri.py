"""Packs whose store is a URI (`file://`, the code path of `s3://`): a pack cut short resumes on
another node from its state at the URI, and the next stage on a third node reads its upstream
checkpoints from the URI. Each "node" is a private cache directory."""
from __future__ import annotations

from pathlib import Path

import pytest

from partfer.data_prep.errors import DatasetRootError
from partfer.orchestrator.storage import remote
from partfer.orchestrator.config import load_config
from partfer.orchestrator.execution.plan import build_plan
from partfer.orchestrator.execution.runner import check_inputs
from partfer.orchestrator.storage.root import open_store
from partfer.orchestrator.storage.store import DONE_FILE, is_done, join, open_prepared
from partfer.orchestrator.training.train import run_pack

TINY = {"image_size": 32, "train.steps_per_epoch": None, "networks": ["el"], "parts": ["mouth"], "train.twin_selection": None,
        "datasets.jaffe.epochs": {"baseline": 2, "landmark": 3, "head": 2, "finetune": 2},
        "train.checkpoint_every": 1, "train.checkpoint_seconds": 0}


class WorkerDied(Exception):
    pass


def _at_uri(location: str) -> Path:
    fs, path = remote.resolve(location)
    return Path(path)


@pytest.mark.slow
def test_a_chain_moves_between_nodes_through_the_uri(tiny_prepared, tmp_path, monkeypatch):
    uri = (tmp_path / "store").as_uri()
    monkeypatch.setenv(remote.CACHE_ENV, str(tmp_path / "node-a"))
    prepared = open_store(uri).share_prepared(tiny_prepared)   # uploaded under <uri>/prepared/
    assert prepared == join(uri, "prepared", Path(tiny_prepared).name)
    cfg = load_config("demo", TINY)
    plan = build_plan(cfg, {"jaffe": open_prepared(prepared)}, uri, "cpu", "t", 2)
    landmark, head, finetune = plan.chains[0]
    assert landmark.prepared_dir == prepared and landmark.state_dir.startswith(uri)
    assert all(m.out_dir.startswith(uri) for m in landmark.models)
    assert plan.run_plan.datasets["jaffe"].prepared == f"prepared/{Path(tiny_prepared).name}"
    # `--prepared NAME=<URI>`: checked at the URI, and copied into another store that needs it
    check_inputs(cfg, {}, {"jaffe": prepared})
    with pytest.raises(DatasetRootError, match="not a finished prepared data set"):
        check_inputs(cfg, {}, {"jaffe": join(uri, "prepared", "jaffe-000000000000")})
    elsewhere = (tmp_path / "other-store").as_uri()
    copy = open_store(elsewhere).share_prepared(prepared)
    assert copy == join(elsewhere, "prepared", Path(tiny_prepared).name)
    assert (_at_uri(copy) / "_SUCCESS").is_file() and (_at_uri(copy) / "manifest.json").is_file()

    def die_at_epoch_2(epoch, _metrics):
        if epoch == 2:
            raise WorkerDied
    with pytest.raises(WorkerDied):
        run_pack(landmark, log=lambda _: None, on_epoch=die_at_epoch_2)
    state = _at_uri(join(landmark.state_dir, "state.pt"))
    assert state.is_file()                                 # epoch 1's state, uploaded

    monkeypatch.setenv(remote.CACHE_ENV, str(tmp_path / "node-b"))
    lines: list[str] = []
    assert run_pack(landmark, log=lines.append).trained == 2
    assert any("resumed landmark pack of 2 at epoch 1" in line for line in lines), lines
    assert not state.parent.exists(), "resumable state left at the URI"
    assert all(is_done(m.out_dir) and (_at_uri(m.out_dir) / DONE_FILE).is_file() for m in landmark.models)

    monkeypatch.setenv(remote.CACHE_ENV, str(tmp_path / "node-c"))
    assert run_pack(head, log=lambda _: None).trained == 2
    assert run_pack(finetune, log=lambda _: None).trained == 2
    for m in landmark.models:                              # fetched here from the URI, by node-c
        assert remote.cache_path(join(m.out_dir, "checkpoint.pt")).is_file()
    for m in finetune.models:
        assert {"checkpoint.pt", "predictions.parquet", "history.csv", DONE_FILE} <= \
            {p.name for p in _at_uri(m.out_dir).iterdir()}
    assert not list(_at_uri(uri).rglob("*.tmp-*"))
