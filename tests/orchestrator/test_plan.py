from data_prep.prepared import load_prepared
from orchestrator.config import load_config
from orchestrator.plan import build_plan


def _plan(prepared_dir, tmp_path, **over):
    cfg = load_config("demo", over)
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
    b = _plan(tiny_prepared, tmp_path, **{"train.fused_bn": False, "train.fused_grey_conv": True,
                                          "train.fused_augment": False, "train.cuda_graphs": True,
                                          "train.triton_conv": True})
    for plan, want in ((a, (True, False, "auto", False, False)), (b, (False, True, "off", True, True))):
        assert {(p.fused_bn, p.fused_grey_conv, p.fused_augment, p.cuda_graphs, p.triton_conv)
                for chain in plan.chains for p in chain} == {want}
    assert {j.key for j in _jobs(a).values()} == {j.key for j in _jobs(b).values()}
