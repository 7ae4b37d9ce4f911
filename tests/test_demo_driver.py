"""The demo driver's bookkeeping (diffariff_jax/demo.py): stages run in order, a finished stage is skipped
on the next run, a failed one leaves no marker and fails in one line, a changed or --redo stage is redone
with everything after it. The stages here are tiny python -c commands, so this takes a second."""
import json
import sys

import pytest

from diffariff_jax import demo
from diffariff_jax.demo_plan import SIZES, Stage, plan


def _stages(out, fail_second=False, second_arg="b"):
    """Three stages appending to log.txt; the second and third also write into a folder of their own
    (their outputs), which a resuming tool would pick up."""
    log = out / "log.txt"
    append = ("import os, sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')\n"
              "if len(sys.argv) > 3: os.makedirs(sys.argv[3], exist_ok=True); "
              "open(os.path.join(sys.argv[3], sys.argv[2]), 'w').write('x')")
    second = "raise SystemExit(3)" if fail_second else append
    return [Stage("first", "writes a", ((sys.executable, "-c", append, str(log), "a"),)),
            Stage("second", "writes b", ((sys.executable, "-c", second, str(log), second_arg, str(out / "b")),),
                  (out / "b",)),
            Stage("third", "writes c", ((sys.executable, "-c", append, str(log), "c", str(out / "c")),),
                  (out / "c",))]


def _use(monkeypatch, stages):
    monkeypatch.setattr(demo, "plan", lambda out, size: stages)


def _log(out):
    return (out / "log.txt").read_text().split()


def test_finished_stages_are_skipped_on_the_next_run(tmp_path, monkeypatch, capsys):
    _use(monkeypatch, _stages(tmp_path))
    demo.run_demo(tmp_path, "quick")
    assert _log(tmp_path) == ["a", "b", "c"]
    demo.run_demo(tmp_path, "quick")
    assert _log(tmp_path) == ["a", "b", "c"]  # nothing ran again
    assert "second: done earlier" in capsys.readouterr().out
    record = json.loads((tmp_path / "stages.json").read_text())
    assert [r["stage"] for r in record["stages"]] == ["first", "second", "third"]
    assert all(r["skipped"] for r in record["stages"])
    assert "Stage times" in (tmp_path / "report" / "examples.html").read_text()


def test_a_failed_stage_leaves_no_marker_and_the_rerun_resumes_there(tmp_path, monkeypatch, capsys):
    _use(monkeypatch, _stages(tmp_path, fail_second=True))
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--out", str(tmp_path), "--size", "quick"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stage 'second' failed (exit 3)" in err
    assert not (tmp_path / ".stages" / "second.json").exists()
    _use(monkeypatch, _stages(tmp_path))
    demo.run_demo(tmp_path, "quick")
    assert _log(tmp_path) == ["a", "b", "c"]  # first was not redone


def test_changed_commands_and_redo_rerun_that_stage_and_the_later_ones(tmp_path, monkeypatch):
    _use(monkeypatch, _stages(tmp_path))
    demo.run_demo(tmp_path, "quick")
    _use(monkeypatch, _stages(tmp_path, second_arg="B"))
    demo.run_demo(tmp_path, "quick")
    assert _log(tmp_path) == ["a", "b", "c", "B", "c"]
    demo.run_demo(tmp_path, "quick", redo="third")
    assert _log(tmp_path) == ["a", "b", "c", "B", "c", "c"]
    # a redone stage starts from nothing: the outputs of its earlier run are gone
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["B"]
    (tmp_path / "c" / "leftover").write_text("x")
    demo.run_demo(tmp_path, "quick", redo="third")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["c"]


def test_an_interrupted_stage_resumes_on_what_it_left(tmp_path, monkeypatch):
    _use(monkeypatch, _stages(tmp_path, fail_second=True))
    with pytest.raises(demo.DemoError):
        demo.run_demo(tmp_path, "quick")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "partial").write_text("x")  # what an interrupted tool left to resume from
    _use(monkeypatch, _stages(tmp_path))
    demo.run_demo(tmp_path, "quick")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["b", "partial"]


def test_bad_flags_fail_in_one_line(tmp_path, monkeypatch, capsys):
    _use(monkeypatch, _stages(tmp_path))
    with pytest.raises(SystemExit):
        demo.main(["--out", str(tmp_path), "--redo", "nope"])
    assert "no such stage" in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(SystemExit):
        demo.main(["--out", str(afile)])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a folder" in err


def test_the_plan_runs_the_real_clis_on_absolute_paths(tmp_path):
    stages = plan(tmp_path, SIZES["full"])
    assert [s.name for s in stages][:5] == ["render", "cae", "clap", "precompute", "ldm"]
    modules = [cmd[2] for s in stages for cmd in s.commands]
    assert "diffariff_jax.train" in modules and "diffariff_jax.precompute" in modules
    for s in stages:
        for cmd in s.commands:
            for arg in cmd:
                if str(tmp_path) in arg:
                    assert arg.split("=")[-1].startswith("/")


def test_stages_share_one_compilation_cache_in_the_output_folder_unless_the_user_set_one(tmp_path, monkeypatch):
    show = "import os, sys; open(sys.argv[1], 'a').write(os.environ['JAX_COMPILATION_CACHE_DIR'] + '\\n')"
    stages = [Stage(n, "prints the cache", ((sys.executable, "-c", show, str(tmp_path / "log.txt")),)) for n in "ab"]
    _use(monkeypatch, stages)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    demo.run_demo(tmp_path, "quick")
    assert _log(tmp_path) == [str(tmp_path / ".xla_cache")] * 2
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
    demo.run_demo(tmp_path, "quick", redo="a")
    assert _log(tmp_path)[2:] == [str(tmp_path / "mine")] * 2
