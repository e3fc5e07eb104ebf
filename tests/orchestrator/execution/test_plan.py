from partfer.data_prep.prepared import load_prepared
from partfer.orchestrator.config import load_config
from partfer.orchestrator.execution.plan import build_plan


def _plan(prepared_dir, tmp_path, **over):
    cfg = load_config("demo", {"train.twin_selection": None, "members": 5, **over})
    return build_plan(cfg, {"jaffe": load_prepared(prepared_dir)}, str(tmp_path), "cpu", "r1",
                      pack_size=7)


def _jobs(plan):
    return {(j.meta["network"], j.meta["member"], j.fold, pack.stage.stage): j
            for chain in plan.chains for pack in chain for j in pack.models}


def test_every_network_member_fold_and_stage_is_planned(tiny_prepared, tmp_path):
    plan = _plan(tiny_prepared, tmp_path)
    folds = 4                                            # leave one of 4 subjects out
    assert len(plan.run_plan.models) == (5 + 5 + 5) * folds
    assert plan.n_model_stages == 5 * folds * 1 + 10 * folds * 3
    assert plan.n_done == 0
    jobs = _jobs(plan)
    assert len({j.key for j in jobs.values()}) == len(jobs)
    # stages chain: head starts from landmark's output, finetune from head's
    for (net, member, fold, stage), job in jobs.items():
        if stage == "head":
            assert job.upstream_dir == jobs[(net, member, fold, "landmark")].out_dir
        if stage == "finetune":
            assert job.upstream_dir == jobs[(net, member, fold, "head")].out_dir
        if stage in ("landmark", "baseline"):
            assert job.upstream_dir is None
    # packs hold one stage of one stage-sequence and at most pack_size models
    for chain in plan.chains:
        assert [p.stage.stage for p in chain] in (["baseline"], ["landmark", "head", "finetune"])
        assert all(len(p.models) <= 7 for p in chain)
    # EL parts regress their own points; FTL members all 68
    assert jobs[("el", "mouth", 0, "landmark")].region == "mouth"
    assert jobs[("ftl", "m3", 0, "landmark")].region == "face"


def test_test_subject_never_trains_its_own_fold(tiny_prepared, tmp_path):
    data = load_prepared(tiny_prepared)
    for job in _jobs(_plan(tiny_prepared, tmp_path)).values():
        test_subjects = {data.subjects[i] for i in job.test}
        assert len(test_subjects) == 1
        assert not test_subjects & {data.subjects[i] for i in job.train + job.val}


def test_changing_finetune_lr_keeps_earlier_stage_keys(tiny_prepared, tmp_path):
    a = _jobs(_plan(tiny_prepared, tmp_path))
    b = _jobs(_plan(tiny_prepared, tmp_path, **{"train.lr.finetune": 3e-4}))
    for k in a:
        same = a[k].key == b[k].key
        assert same == (k[3] != "finetune"), k


def test_kernel_settings_reach_every_pack_and_leave_keys_alone(tiny_prepared, tmp_path):
    # execution-only settings: they change how a pack computes, not what, so not the stage keys
    a = _plan(tiny_prepared, tmp_path)
    b = _plan(tiny_prepared, tmp_path, **{"train.fused_bn": False, "train.fused_augment": False,
                                          "train.compile": "default", "train.deterministic": True})
    for plan, want in ((a, ("auto", "auto", "off", False)), (b, ("off", "off", "default", True))):
        assert {(p.execution.network.fuse, p.execution.fused_augment, p.execution.compile, p.execution.deterministic)
                for chain in plan.chains for p in chain} == {want}
    assert {j.key for j in _jobs(a).values()} == {j.key for j in _jobs(b).values()}


def test_the_twin_shares_the_trainings_that_only_its_kept_epoch_would_repeat(tiny_prepared, tmp_path):
    plan = _plan(tiny_prepared, tmp_path, **{"train.twin_selection": "last"})
    single = _plan(tiny_prepared, tmp_path / "single")
    assert len(plan.run_plan.models) == 2 * len(single.run_plan.models)
    assert plan.n_model_stages == 2 * single.n_model_stages          # every model-stage kept twice...
    by_selection = {}
    for r in plan.run_plan.models:
        by_selection.setdefault(r.selection, []).append(r)
    assert sorted(by_selection) == ["evaluated_fold", "last"]
    assert {r.key for r in by_selection["last"]}.isdisjoint(r.key for r in by_selection["evaluated_fold"])
    # the main selection's keys are those of a run without the twin: it reuses them
    assert sorted(r.key for r in by_selection["evaluated_fold"]) == sorted(r.key for r in single.run_plan.models)
    # ...but the Baseline and landmark stages are trained once for both selections: the twin's
    # models of those stages ride in the main selection's packs; its head and fine-tune stages,
    # which start from its own landmark models, follow in the same chain
    for chain in plan.chains:
        stages = [(p.stage.stage, p.stage.selection) for p in chain]
        assert stages in ([("baseline", "evaluated_fold")],
                          [("landmark", "evaluated_fold"), ("head", "evaluated_fold"), ("finetune", "evaluated_fold"),
                           ("head", "last"), ("finetune", "last")])
        first = chain[0]
        assert all([o.selection for o in m.shared] == ["last"] for m in first.models)
        assert all(not m.shared for p in chain[1:] for m in p.models)
        if first.stage.stage == "landmark":
            twin_landmarks = {m.shared[0].out_dir for m in first.models}
            assert {m.upstream_dir for m in chain[3].models} == twin_landmarks
    twin_keys = {o.key for chain in plan.chains for p in chain for m in p.models for o in m.shared}
    records = {d for r in by_selection["last"] for s, d in r.stage_dirs.items() if s in ("baseline", "landmark")}
    assert len(twin_keys) == len(records) == 5 * 4 + 10 * 4


def test_a_patience_trains_the_twin_on_its_own(tiny_prepared, tmp_path):
    plan = _plan(tiny_prepared, tmp_path, **{"train.twin_selection": "last", "train.patience": 3})
    assert not any(m.shared for chain in plan.chains for p in chain for m in p.models)
    for chain in plan.chains:
        assert len({p.stage.selection for p in chain}) == 1


def test_only_heldout_selection_takes_training_subjects_out(tiny_prepared, tmp_path):
    data = load_prepared(tiny_prepared)
    for selection in ("evaluated_fold", "last"):
        for job in _jobs(_plan(tiny_prepared, tmp_path / selection, **{"train.selection": selection})).values():
            assert job.val == ()
            assert len(job.train) + len(job.test) == len(data.sample_ids)
    held = _jobs(_plan(tiny_prepared, tmp_path / "held", **{"train.selection": "heldout_subjects",
                                                            "train.val_subject_fraction": 0.3}))
    for job in held.values():
        val_subjects = {data.subjects[i] for i in job.val}
        assert len(val_subjects) == 1
        assert not val_subjects & {data.subjects[i] for i in job.train + job.test}


def test_protocol_test_rows_are_every_row_once(tiny_prepared, tmp_path):
    plan = _plan(tiny_prepared, tmp_path)
    data = load_prepared(tiny_prepared)
    assert plan.run_plan.datasets["jaffe"].test_rows == len(data.sample_ids)


def test_recipe_knobs_reach_the_stage_settings(tiny_prepared, tmp_path):
    jobs = _plan(tiny_prepared, tmp_path, **{"train.steps_per_epoch": 30, "train.patience": None}).chains
    stages = {p.stage.stage: p.stage for chain in jobs for p in chain}
    assert all(s.steps_per_epoch == 30 and s.patience is None and s.selection == "evaluated_fold"
               for s in stages.values())
    assert stages["head"].frozen_bn and stages["finetune"].frozen_bn
    assert not stages["landmark"].frozen_bn and not stages["baseline"].frozen_bn
    trainable = _plan(tiny_prepared, tmp_path / "t", **{"train.transfer_bn": "trainable"}).chains
    assert not any(p.stage.frozen_bn for chain in trainable for p in chain)


def test_an_image_without_landmarks_is_no_landmark_target_but_is_still_classified(tiny_prepared, tmp_path):
    import dataclasses

    import numpy as np
    data = load_prepared(tiny_prepared)
    ok = np.ones(len(data.sample_ids), dtype=bool)
    ok[::5] = False                                    # as if the annotator had failed on these
    data = dataclasses.replace(data, landmarks_ok=ok)
    cfg = load_config("demo", {"train.twin_selection": None})
    plan = build_plan(cfg, {"jaffe": data}, str(tmp_path), "cpu", "r1", pack_size=7)
    failed = set(np.flatnonzero(~ok).tolist())
    seen_in = {"landmark": set(), "classify": set()}
    for chain in plan.chains:
        for pack in chain:
            for job in pack.models:
                rows = set(job.train) | set(job.val) | set(job.test)
                kind = "landmark" if pack.stage.stage == "landmark" else "classify"
                seen_in[kind] |= rows & failed
    assert seen_in["landmark"] == set()
    assert seen_in["classify"] == failed
