"""`partfer run`'s -q / -v and its last line: the path of report.html, the page to open."""
from pathlib import Path

import pytest

from partfer import cli
from partfer.orchestrator.execution import progress, runner


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """A run that returns a run directory at once, and a report builder that writes report.md."""
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    seen = {}

    def run(req):
        seen["verbosity"] = progress.Progress(0, 0, 0).verbosity
        return str(run_dir)

    def build_report(path):
        (Path(path) / "report.md").write_text("# r\n")
        (Path(path) / "report.html").write_text("<html></html>")
        return Path(path) / "report.md"
    monkeypatch.setattr(runner, "run", run)
    monkeypatch.setattr("partfer.results.report.build_report", build_report)
    monkeypatch.setattr(progress, "_verbosity", progress.NORMAL)
    return run_dir, seen


@pytest.mark.parametrize("flags,level", [([], progress.NORMAL), (["-q"], progress.QUIET),
                                         (["--verbose"], progress.VERBOSE)])
def test_flags_set_the_verbosity_and_the_last_line_is_report_html(fake_run, capsys, flags, level):
    run_dir, seen = fake_run
    assert cli.main(["run", "--out", str(run_dir.parent.parent), *flags]) == 0
    assert seen["verbosity"] == level
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run_dir / "report.html")


def test_quiet_and_verbose_exclude_each_other(fake_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "-q", "-v"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
