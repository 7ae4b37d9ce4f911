"""MetricWriter: a bucket workdir is rewritten in the background, not on every write; a dead console
is silenced instead of raising (the preemption save must not depend on someone reading the log)."""
import json
import subprocess
import sys
import textwrap
import threading

from diffariff_jax import paths
from diffariff_jax.training import logging as metric_logging


def test_bucket_metrics_are_written_in_the_background_not_rewritten_per_write(tmp_path, monkeypatch):
    # A local stand-in for a bucket: the directory is treated as a URI (no append), its writes are counted.
    monkeypatch.setattr(metric_logging.paths, "is_uri", lambda path: str(path).startswith(str(tmp_path)))
    path_type = type(paths.resolve(tmp_path))
    rewrites = []
    real_write_text = path_type.write_text

    def counting_write_text(self, text, *args, **kwargs):
        rewrites.append(threading.current_thread().name)
        return real_write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(path_type, "write_text", counting_write_text)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 0, "split": "train", "loss": 9.0}) + "\n")
    writer = metric_logging.MetricWriter(str(tmp_path), tensorboard=False, console=False, upload_secs=60)
    for step in range(1, 201):
        writer.write(step, {"loss": 1.0 / step})
    writer.close()
    assert len(rewrites) == 1 and rewrites[0] != threading.main_thread().name  # was 200, on the train loop
    records = metric_logging.read_metrics(str(tmp_path), "train")
    assert [r["step"] for r in records] == list(range(201))  # the resumed run's earlier lines are kept


def test_a_closed_console_is_silenced_and_the_exit_status_kept(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from diffariff_jax.training.logging import MetricWriter
        writer = MetricWriter({str(tmp_path)!r}, tensorboard=False)
        writer.message("first")
        sys.stdin.readline()  # the test closes our stdout's reader, then lets us go on
        for step in range(50):
            writer.write(step, {{"loss": 1.0}})
        writer.close()
        sys.exit(75)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin"})
    assert proc.stdout.readline().strip() == "first"
    proc.stdout.close()
    proc.stdin.write("go\n")
    proc.stdin.close()
    assert proc.wait(timeout=120) == 75  # not 1 (BrokenPipeError) nor 120 (failed flush at exit)
    assert len(metric_logging.read_metrics(str(tmp_path))) == 50
