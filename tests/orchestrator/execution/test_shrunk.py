"""A run that differs from paper.yaml says how, so its report is labelled not comparable."""
from partfer.orchestrator.config import load_config
from partfer.orchestrator.execution.runner import shrunk_against_paper


def test_the_paper_is_not_shrunk_and_the_demo_names_its_batches_and_landmark_targets():
    assert shrunk_against_paper(load_config("paper"), ["jaffe"]) == []
    reasons = shrunk_against_paper(load_config("demo"), ["jaffe"])
    assert "batches of 16 instead of 32" in reasons
    assert "landmark targets standardized (paper crop)" in reasons
    assert shrunk_against_paper(load_config("paper", {"train.batch_size": 64}), ["jaffe"]) == \
        ["batches of 64 instead of 32"]
