"""Run records: a run with a no-peeking twin holds every model twice; ensembles take one copy."""
from partfer.orchestrator.records import ModelRecord, RunPlan, main_models, selections


def _plan(main: str, *selection_of_records: str) -> RunPlan:
    models = [ModelRecord("jaffe", "el", "mouth", i, "finetune", f"k{i}", f"models/k{i}", selection=s)
              for i, s in enumerate(selection_of_records)]
    return RunPlan("r", "/s", {"selection": main}, {}, models)


def test_the_main_selection_comes_first_and_its_models_alone_are_main():
    plan = _plan("evaluated_fold", "last", "evaluated_fold", "last", "evaluated_fold")
    assert selections(plan) == ["evaluated_fold", "last"]
    assert [r.key for r in main_models(plan)] == ["k1", "k3"]


def test_plans_without_a_recorded_selection_keep_every_model():
    plan = _plan(None, "heldout_subjects", "heldout_subjects")
    assert selections(plan) == ["heldout_subjects"]
    assert len(main_models(plan)) == 2
    assert main_models(RunPlan("r", "/s", {}, {}, [])) == []
