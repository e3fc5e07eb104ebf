import pytest
import pandas as pd
import pyarrow.parquet as pq
import torch

from partfer.data_prep.prepared import load_prepared
from partfer.orchestrator.config import load_config
from partfer.orchestrator.execution.plan import build_plan
from partfer.orchestrator.training.train import run_pack

pytestmark = pytest.mark.slow          # every test trains packs through run_pack

TINY = {"image_size": 32, "train.steps_per_epoch": None, "networks": ["el"], "parts": ["mouth", "nose"], "train.twin_selection": None,
        "datasets.jaffe.epochs": {"baseline": 2, "landmark": 2, "head": 2, "finetune": 2}}


def _chain(prepared_dir, storage, **over):
    cfg = load_config("demo", {**TINY, **over})
    plan = build_plan(cfg, {"jaffe": load_prepared(prepared_dir)}, str(storage), "cpu", "t", pack_size=2)
    return plan.chains[0]


def _ckpt(job, i=0):
    return torch.load(f"{job.models[i].out_dir}/checkpoint.pt", weights_only=True)


def test_head_stage_leaves_the_extractor_untouched_and_finetune_moves_it(tiny_prepared, tmp_path):
    landmark, head, finetune = _chain(tiny_prepared, tmp_path)
    for job in (landmark, head, finetune):
        result = run_pack(job)
        assert result.trained == 2
    a, b, c = _ckpt(landmark), _ckpt(head), _ckpt(finetune)
    # weights and BN running statistics; num_batches_tracked is a pack-wide counter that a fixed
    # BN momentum never reads (models/packed.py), so it is not part of a model's state
    ext = [k for k in a if k.startswith("extractor.") and not k.endswith("num_batches_tracked")]
    assert ext and all(torch.equal(a[k], b[k]) for k in ext), "stage 2 changed the frozen extractor"
    assert any(not torch.equal(b[k], c[k]) for k in ext if k.endswith("weight")), "fine-tuning moved nothing"
    # the landmark head from stage 1 rides along unchanged (the before/after study needs it)
    assert all(torch.equal(a[k], c[k]) for k in a if k.startswith("landmark_head."))
    assert "classifier.fc3.weight" in b and "classifier.fc3.weight" not in a


def test_outputs_follow_the_contract(tiny_prepared, tmp_path):
    landmark, head, finetune = _chain(tiny_prepared, tmp_path)
    for job in (landmark, head, finetune):
        run_pack(job)
    job = finetune.models[0]
    preds = pq.read_table(f"{job.out_dir}/predictions.parquet").to_pandas()
    assert len(preds) == len(job.test)
    probs = preds["probs"].apply(lambda p: float(sum(p)))
    assert ((probs - 1).abs() < 1e-4).all()
    assert set(preds["fold"]) == {job.fold}
    hist = pd.read_csv(f"{job.out_dir}/history.csv")
    assert list(hist["epoch"]) == [1, 2]
    lms = pq.read_table(f"{landmark.models[0].out_dir}/landmarks.parquet").to_pandas()
    assert len(lms["pred"][0]) == len(lms["truth"][0]) == 40      # mouth: 20 points


def test_finished_models_are_skipped(tiny_prepared, tmp_path):
    landmark, _, _ = _chain(tiny_prepared, tmp_path)
    assert run_pack(landmark).trained == 2
    again = run_pack(landmark)
    assert again.trained == 0 and again.images == 0


def test_early_stopping_keeps_the_best_epoch(tiny_prepared, tmp_path):
    # min_delta so large that only the first evaluation counts as an improvement
    over = {"train.min_delta": 1e9, "train.patience": 2,
            "datasets.jaffe.epochs": {"baseline": 10, "landmark": 10, "head": 10, "finetune": 10},
            "networks": ["baseline"]}
    (job,) = _chain(tiny_prepared, tmp_path, **over)
    result = run_pack(job)
    assert result.epochs == [3, 3]
    for m in job.models:
        hist = pd.read_csv(f"{m.out_dir}/history.csv")
        assert list(hist["epoch"]) == [1, 2, 3] and bool(hist["stopped"].iloc[-1])


def test_stopped_models_leave_the_computation_without_changing_anyone(tiny_prepared, tmp_path):
    # Eight models that stop early at different epochs. Once half of the computed ones stopped,
    # the pack computes only the rest; a model that stopped before that happened ends exactly
    # as it does when the pack keeps computing every model.
    over = {"networks": ["baseline"], "members": 2, "train.patience": 3, "train.lr.baseline": 1e-3,
            "datasets.jaffe.epochs": {"baseline": 20, "landmark": 2, "head": 2, "finetune": 2}}
    runs = {}
    for compact in (True, False):
        cfg = load_config("demo", {**TINY, **over, "train.compact_stopped": compact})
        plan = build_plan(cfg, {"jaffe": load_prepared(tiny_prepared)}, str(tmp_path / str(compact)), "cpu",
                          "t", pack_size=8)
        (job,), logs = plan.chains[0], []
        runs[compact] = (job, run_pack(job, log=logs.append), logs)
    job, result, logs = runs[True]
    first_cut = [line for line in logs if "computing only those" in line]
    assert first_cut, "no model left the computation"
    cut_epoch = int(first_cut[0].rsplit(" ", 1)[1])
    off_job, off_result, off_logs = runs[False]
    assert not any("computing only those" in line for line in off_logs)
    early = [i for i, e in enumerate(result.epochs) if e < cut_epoch]
    assert early and len(early) < len(job.models)
    for i in early:
        assert off_result.epochs[i] == result.epochs[i]
        a, b = _ckpt(job, i), _ckpt(off_job, i)
        assert all(torch.equal(a[k], b[k]) for k in a if not k.endswith("num_batches_tracked"))
    # New step plans (a graphed run's captures) only for the first stop and each cut, however many
    # epochs models stopped at: later stops change the plan's tensors in place.
    stop_epochs = {e for e in off_result.epochs if e < 20}
    assert len(stop_epochs) >= 3, "the premise: models stop at several different epochs"
    assert off_result.step_plans == 2
    cuts = sum("computing only those" in line for line in logs)
    assert 1 + cuts <= result.step_plans <= 2 + cuts
    for i, m in enumerate(job.models):          # every model, computed to the end or not, is written
        hist = pd.read_csv(f"{m.out_dir}/history.csv")
        assert len(hist) == result.epochs[i] and hist["val_loss"].notna().all()
        assert len(pq.read_table(f"{m.out_dir}/predictions.parquet")) == len(m.test)


def test_a_packed_run_learns_as_well_as_one_model_per_pack(tiny_prepared, tmp_path):
    # The same eight Baseline models (2 members x 4 folds, same seeds) trained as one pack and as
    # eight packs of one. Their batches differ (a pack draws them for all its models from one
    # generator), so the accuracies agree within noise, not bit for bit; both must learn.
    over = {"networks": ["baseline"], "members": 2, "train.lr.baseline": 1e-3, "train.patience": 50,
            "datasets.jaffe.epochs": {"baseline": 15, "landmark": 2, "head": 2, "finetune": 2}}
    cfg = load_config("demo", {**TINY, **over})
    accuracy = {}
    for pack_size in (8, 1):
        plan = build_plan(cfg, {"jaffe": load_prepared(tiny_prepared)}, str(tmp_path / str(pack_size)), "cpu",
                          "t", pack_size=pack_size)
        jobs = [job for chain in plan.chains for job in chain]
        assert len(jobs) == 8 // pack_size
        correct = total = 0
        for job in jobs:
            run_pack(job)
            for m in job.models:
                preds = pq.read_table(f"{m.out_dir}/predictions.parquet").to_pandas()
                guess = preds["probs"].apply(lambda p: int(max(range(len(p)), key=p.__getitem__)))
                correct += int((guess == preds["label"].map(job.classes.index)).sum())
                total += len(preds)
        accuracy[pack_size] = correct / total
    chance = 1 / 7
    assert min(accuracy.values()) > chance + 0.1, accuracy      # measured: 0.31 and 0.32
    assert abs(accuracy[8] - accuracy[1]) < 0.12, accuracy


def test_compiled_training_step_trains_the_same(tiny_prepared, tmp_path):
    # train.compile hands the training step's forward + loss to torch.compile: the same losses
    # (to float tolerance), the same outputs written.
    over = {"networks": ["baseline"], "members": 1, "parts": ["mouth"], "train.lr.baseline": 1e-3,
            "datasets.jaffe.epochs": {"baseline": 2, "landmark": 2, "head": 2, "finetune": 2}}
    losses = {}
    for mode in ("off", "default"):
        cfg = load_config("demo", {**TINY, **over, "train.compile": mode})
        plan = build_plan(cfg, {"jaffe": load_prepared(tiny_prepared)}, str(tmp_path / mode), "cpu", "t",
                          pack_size=2)
        job = plan.chains[0][0]
        assert job.execution.compile == mode
        run_pack(job)
        losses[mode] = [pd.read_csv(f"{m.out_dir}/history.csv")["train_loss"].tolist() for m in job.models]
    # rounding only: inductor's kernels sum in other orders (measured up to 0.15 % by epoch 2)
    for eager, compiled in zip(losses["off"], losses["default"]):
        assert compiled == pytest.approx(eager, rel=5e-3)


@pytest.mark.triton
def test_the_fused_augmentation_route_trains_like_pytorchs(tiny_prepared, tmp_path):
    # run_pack on the kernel route (on CUDA by default; forced here, in Triton's interpreter) and
    # on PyTorch's: the same draws and the same images to float rounding, so the same training
    # (the kernel passed its check here: no fallback)
    import dataclasses

    hist = {}
    for mode in ("off", "on"):
        job = _chain(tiny_prepared, tmp_path / mode)[0]
        job = dataclasses.replace(job, execution=dataclasses.replace(job.execution, fused_augment=mode))
        assert job.stage.stage == "landmark"           # landmarks move with the images
        result = run_pack(job)
        assert result.trained == 2 and result.kernel_fallbacks == {}
        hist[mode] = pd.concat([pd.read_csv(f"{m.out_dir}/history.csv") for m in job.models])
    # how far float rounding carries in this tiny run, measured: noise of 1e-6 added to PyTorch's
    # route's images moved the training losses by <= 0.3 % and the eval-mode validation losses
    # (BN running averages of a 2-epoch run) by up to 2 %; a wrong image or landmark would not
    for column, rel in (("train_loss", 5e-3), ("val_loss", 5e-2)):
        a, b = hist["on"][column].to_numpy(), hist["off"][column].to_numpy()
        assert abs(a - b).max() <= rel * abs(b).max(), (column, a, b)


def _record_batches(monkeypatch):
    """The rows of every training batch, as drawn (the real batch function, its input recorded)."""
    import partfer.orchestrator.training.train as train_module
    drawn = []
    real = train_module.augmented_batch

    def recording(images, idx, *args, **kwargs):
        drawn.append(idx.detach().cpu().clone())
        return real(images, idx, *args, **kwargs)
    monkeypatch.setattr(train_module, "augmented_batch", recording)
    return drawn


def test_an_epoch_is_steps_per_epoch_steps_and_no_model_sees_another_folds_rows(tiny_prepared, tmp_path,
                                                                                  monkeypatch):
    drawn = _record_batches(monkeypatch)
    over = {"networks": ["baseline"], "members": 1, "train.steps_per_epoch": 3,
            "datasets.jaffe.epochs": {"baseline": 4, "landmark": 2, "head": 2, "finetune": 2}}
    cfg = load_config("demo", {**TINY, **over})
    plan = build_plan(cfg, {"jaffe": load_prepared(tiny_prepared)}, str(tmp_path), "cpu", "t", pack_size=4)
    (job,) = plan.chains[0]
    assert len(job.models) == 4 and len({m.fold for m in job.models}) == 4
    run_pack(job)
    assert len(drawn) == 3 * 4                          # 3 steps an epoch, 4 epochs
    for rows in drawn:
        assert rows.shape == (4, job.stage.batch_size)
        for m, model_rows in zip(job.models, rows.tolist()):
            assert set(model_rows) <= set(m.train)      # its own training rows only
            assert not set(model_rows) & set(m.test)
    for m in job.models:
        assert len(pd.read_csv(f"{m.out_dir}/history.csv")) == 4


def _weights(job, i):
    state = _ckpt(job, i)
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("patience", [None, 2])
def test_the_written_weights_are_the_selected_epochs(tiny_prepared, tmp_path, patience):
    """evaluated_fold keeps the epoch of lowest test-fold loss: the checkpoint written equals the
    weights of a run of the same models stopped at that epoch (CPU runs repeat bit for bit, and a
    model's trajectory does not depend on when the others stop). With a patience some models stop
    early; without one all reach the cap."""
    import json
    over = {"networks": ["baseline"], "members": 1, "train.lr.baseline": 3e-3, "train.patience": patience,
            "train.compact_stopped": False, "train.recalibrate_bn": False,
            "datasets.jaffe.epochs": {"baseline": 8, "landmark": 2, "head": 2, "finetune": 2}}
    cfg = load_config("demo", {**TINY, **over})
    (job,) = build_plan(cfg, {"jaffe": load_prepared(tiny_prepared)}, str(tmp_path / "sel"), "cpu", "t",
                        pack_size=4).chains[0]
    assert job.stage.selection == "evaluated_fold" and not job.models[0].val
    result = run_pack(job)
    chosen = []
    for i, m in enumerate(job.models):
        hist = pd.read_csv(f"{m.out_dir}/history.csv")
        meta = json.loads(open(f"{m.out_dir}/meta.json").read())
        assert meta["selection"] == "evaluated_fold"
        # the history's val_loss is the test fold's loss: the kept epoch is its first minimum
        best = int(hist["epoch"][hist["val_loss"].idxmin()])
        assert meta["selected_epoch"] == best
        test_loss = float(meta["test_loss"])
        assert test_loss == pytest.approx(float(hist["val_loss"].min()), rel=1e-5)
        chosen.append(best)
    if patience is None:
        assert result.epochs == [8] * 4
    else:
        assert min(result.epochs) < 8, "the premise: some model stops early"
    assert len(set(chosen)) > 1 or chosen[0] < 8, "the premise: a kept epoch other than the last"
    # snapshots at each model's kept epoch: the same models trained to exactly that epoch
    for epoch in sorted(set(chosen)):
        short = load_config("demo", {**TINY, **over, "train.selection": "last", "train.patience": None,
                                     "datasets.jaffe.epochs.baseline": epoch})
        (snap,) = build_plan(short, {"jaffe": load_prepared(tiny_prepared)}, str(tmp_path / f"e{epoch}"), "cpu",
                             "t", pack_size=4).chains[0]
        assert [m.seed for m in snap.models] == [m.seed for m in job.models]
        run_pack(snap)
        for i, e in enumerate(chosen):
            if e == epoch:
                a, b = _weights(job, i), _weights(snap, i)
                for k in a:
                    torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_last_selection_keeps_the_final_epoch_and_monitors_nothing(tiny_prepared, tmp_path):
    import json
    over = {"networks": ["baseline"], "members": 1, "train.selection": "last",
            "datasets.jaffe.epochs": {"baseline": 3, "landmark": 2, "head": 2, "finetune": 2}}
    cfg = load_config("demo", {**TINY, **over})
    (job,) = build_plan(cfg, {"jaffe": load_prepared(tiny_prepared)}, str(tmp_path), "cpu", "t",
                        pack_size=4).chains[0]
    run_pack(job)
    for m in job.models:
        hist = pd.read_csv(f"{m.out_dir}/history.csv")
        assert list(hist["epoch"]) == [1, 2, 3] and hist["val_loss"].isna().all()
        assert json.loads(open(f"{m.out_dir}/meta.json").read())["selected_epoch"] == 3


def test_frozen_bn_keeps_the_landmark_stages_statistics_through_transfer(tiny_prepared, tmp_path):
    landmark, head, finetune = _chain(tiny_prepared, tmp_path)
    assert finetune.stage.frozen_bn and head.stage.frozen_bn and not landmark.stage.frozen_bn
    for job in (landmark, head, finetune):
        run_pack(job)
    a, c = _ckpt(landmark), _ckpt(finetune)
    stats = [k for k in a if k.startswith("extractor.") and k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(a[k], c[k]) for k in stats), "fine-tuning moved BN's statistics"
    # the rest of the extractor, BN's scale and shift included, still trains
    assert any(not torch.equal(a[k], c[k]) for k in a if k.startswith("extractor.") and k.endswith("bn1.weight"))
    trainable = _chain(tiny_prepared, tmp_path / "trainable", **{"train.transfer_bn": "trainable"})
    for job in trainable:
        run_pack(job)
    a, c = _ckpt(trainable[0]), _ckpt(trainable[2])
    assert any(not torch.equal(a[k], c[k]) for k in stats), "trainable BN statistics never moved"


def test_a_standardized_landmark_stage_regresses_in_its_own_frame_and_writes_crop_units(tiny_prepared, tmp_path):
    """train.landmark_targets standardized: each model's frame is its training points' mean shape
    and spread; the checkpoint holds the folded head, which predicts exactly the written points."""
    from partfer.data_prep.ibug68 import region_indices
    from partfer.models.subnet import SubNetwork
    from partfer.orchestrator.execution.plan import result_settings
    from partfer.orchestrator.training.augment import normalise_pixels
    from partfer.orchestrator.training.tensors import device_data
    from partfer.orchestrator.training.train import _Targets, target_frame

    crop = _chain(tiny_prepared, tmp_path / "crop", **{"train.landmark_targets": "crop"})[0]
    landmark = _chain(tiny_prepared, tmp_path / "std", **{"train.landmark_targets": "standardized"})[0]
    assert crop.stage.landmark_targets == "crop" and landmark.stage.landmark_targets == "standardized"
    assert [m.key for m in crop.models] != [m.key for m in landmark.models]
    # at its default the setting stays out of the key: stores written before it existed still match
    assert "landmark_targets" not in result_settings(crop.stage)
    data = device_data(landmark.prepared_dir, landmark.image_size, "cpu", list(landmark.classes))
    center, spread = target_frame(data, list(landmark.models), _Targets.for_models(list(landmark.models), "cpu"))
    for i, m in enumerate(landmark.models):
        coords = [2 * p + c for p in region_indices(m.region) for c in (0, 1)]
        flat = data.landmarks[list(m.train)].reshape(len(m.train), -1)[:, coords]
        n = len(coords)
        torch.testing.assert_close(center[i, :n], flat.mean(0))
        torch.testing.assert_close(spread[i], flat.var(0, unbiased=False).mean().sqrt())
        assert not center[i, n:].any()
    run_pack(landmark)
    for m in landmark.models:
        state = torch.load(f"{m.out_dir}/checkpoint.pt", weights_only=True)
        lms = pq.read_table(f"{m.out_dir}/landmarks.parquet").to_pandas()
        rows = [data.prepared.sample_ids.index(s) for s in lms["sample_id"]]
        net = SubNetwork(None, len(lms["pred"][0]), pool_padding="same", bn_momentum=0.1).eval()
        net.load_state_dict(state)
        with torch.no_grad():
            got = net.landmarks(normalise_pixels(data.images[rows]).unsqueeze(1))
        torch.testing.assert_close(got, torch.tensor(list(lms["pred"])), atol=1e-5, rtol=1e-4)
        hist = pd.read_csv(f"{m.out_dir}/history.csv")
        assert (hist["train_loss"] < 0.5).all(), "the history's losses are in crop units"


def test_only_the_last_epochs_network_has_its_bn_recalibrated(tiny_prepared, tmp_path):
    """train.recalibrate_bn, both selections from one training: `last` keeps the final weights with
    BN statistics recomputed; the authors' selection keeps its chosen epoch's network exactly as
    the validation pass read it, so its test loss is the history's minimum, and its key is that of
    the same model trained without recalibration (it is that model)."""
    import json
    over = {"networks": ["baseline"], "members": 1, "train.lr.baseline": 3e-3, "train.twin_selection": "last",
            "datasets.jaffe.epochs": {"baseline": 6, "landmark": 2, "head": 2, "finetune": 2}}

    def plan(recalibrate, where):
        cfg = load_config("demo", {**TINY, **over, "train.recalibrate_bn": recalibrate})
        (job,) = build_plan(cfg, {"jaffe": load_prepared(tiny_prepared)}, str(tmp_path / where), "cpu", "t",
                            pack_size=4).chains[0]
        return job

    job, plain = plan(True, "recal"), plan(False, "plain")
    assert [m.key for m in job.models] == [m.key for m in plain.models]
    assert all(len(m.shared) == 1 and m.shared[0].selection == "last" for m in job.models)
    assert [m.shared[0].key for m in job.models] != [m.shared[0].key for m in plain.models]
    run_pack(job)
    run_pack(plain)
    for m, p in zip(job.models, plain.models):
        hist = pd.read_csv(f"{m.out_dir}/history.csv")
        meta = json.loads(open(f"{m.out_dir}/meta.json").read())
        assert meta["test_loss"] == pytest.approx(float(hist["val_loss"].min()), rel=1e-5)
        assert meta["stage_settings"]["recalibrate_bn"] is False
        kept, kept_plain = (torch.load(f"{d}/checkpoint.pt", weights_only=True) for d in (m.out_dir, p.out_dir))
        for k, v in kept.items():
            torch.testing.assert_close(v, kept_plain[k], rtol=0, atol=0, msg=k)
        last, last_plain = m.shared[0].out_dir, p.shared[0].out_dir
        assert json.loads(open(f"{last}/meta.json").read())["stage_settings"]["recalibrate_bn"] is True
        a = torch.load(f"{last}/checkpoint.pt", weights_only=True)
        b = torch.load(f"{last_plain}/checkpoint.pt", weights_only=True)
        stats = [k for k in a if k.endswith(("running_mean", "running_var"))]
        assert stats and all(not torch.equal(a[k], b[k]) for k in stats), "the last epoch's BN was not recomputed"
        assert all(torch.equal(a[k], b[k]) for k in a if k not in stats and not k.endswith("num_batches_tracked"))
