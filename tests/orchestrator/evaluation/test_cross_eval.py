"""Cross-data-set tests: a trained model applied, unchanged, to every image of another data set,
its probabilities in the trained classes' order and each row's label kept by name."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from partfer.data_prep.prepared import load_prepared
from partfer.models.config import ArchConfig
from partfer.models.subnet import SubNetwork
from partfer.orchestrator.training.augment import normalise_pixels
from partfer.orchestrator.config import load_config
from partfer.orchestrator.evaluation.cross_eval import CrossEvalJob, run_cross_eval
from partfer.orchestrator.execution.plan import build_plan
from partfer.orchestrator.training.tensors import resize_uint8
from partfer.orchestrator.training.train import run_pack
from partfer.results import metrics


def _other_dataset(source: str, target: Path) -> Path:
    """A second prepared data set from the first's images: its classes listed in another order,
    and one class renamed to one the trained models never saw (CK+'s contempt for SFEW models)."""
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    renamed = manifest["classes"][0]
    manifest["classes"] = ["contempt"] + list(reversed(manifest["classes"][1:]))
    counts = manifest.get("counts", {}).get("label")
    if counts is not None:
        counts["contempt"] = counts.pop(renamed)
    (target / "manifest.json").write_text(json.dumps(manifest))
    for part in (target / "data").glob("*.parquet"):
        table = pq.read_table(part)
        labels = ["contempt" if v == renamed else v for v in table.column("label").to_pylist()]
        table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels))
        pq.write_table(table, part)
    return target


@pytest.mark.slow
def test_cross_predictions_equal_the_saved_model_applied_to_the_other_set(tiny_prepared, tmp_path):
    size = 32
    cfg = load_config("demo", {"image_size": size, "networks": ["baseline"], "members": 1,
                               "train.twin_selection": None, "datasets.jaffe.epochs.baseline": 2})
    plan = build_plan(cfg, {"jaffe": load_prepared(tiny_prepared)}, str(tmp_path / "store"), "cpu", "t",
                      pack_size=4)
    (job,) = plan.chains[0]
    run_pack(job)
    trained_classes = list(job.classes)
    other = _other_dataset(tiny_prepared, tmp_path / "other")
    outs = [str(tmp_path / f"cross{i}.parquet") for i in range(2)]
    cross = CrossEvalJob("jaffe", "other", str(other), tuple(trained_classes),
                         tuple(m.out_dir for m in job.models[:2]), tuple(outs), dict(cfg["model"]), size,
                         "cpu", "fp32")
    assert run_cross_eval(cross) == 2
    data = load_prepared(other)
    x = normalise_pixels(resize_uint8(data.images, size)).unsqueeze(1)
    for model, out in zip(job.models[:2], outs):
        table = pq.read_table(out).to_pandas()
        assert table["sample_id"].tolist() == data.sample_ids          # every image, none dropped
        assert table["label"].tolist() == data.labels                  # the other set's names
        state = torch.load(f"{model.out_dir}/checkpoint.pt", weights_only=True)
        net = SubNetwork.from_arch(len(trained_classes), None, ArchConfig.from_config(cfg["model"]), seed=0)
        net.load_state_dict({k: v for k, v in state.items() if not k.startswith("landmark_head.")})
        net.eval()
        with torch.no_grad():
            expected = torch.softmax(net.classify(x), -1).numpy()
        np.testing.assert_allclose(np.stack(table["probs"].to_numpy()), expected, atol=1e-5)
        # scored by name: a row counts as right when the trained class of that name wins;
        # the renamed class is dropped and counted, not mapped to an index
        known, dropped = metrics.split_known(table.assign(fold=-1), trained_classes)
        assert dropped == {"contempt": data.labels.count("contempt")}
        winners = [trained_classes[int(np.argmax(p))] for p in known["probs"]]
        assert len(known) == len(data.labels) - dropped["contempt"]
        assert sum(w == lbl for w, lbl in zip(winners, known["label"])) == sum(
            trained_classes[int(np.argmax(expected[i]))] == lbl
            for i, lbl in enumerate(data.labels) if lbl != "contempt")
