"""The TPU launch path run for real against fakes: tpu_run.sh on a "worker" (a stale run holding a fake TPU
device, libtpu's lock file, a fake train command), tpu_train.sh against a fake `gcloud` (slice states,
workers' status reports, an unreachable slice), tpu_babysit.sh against a fake tpu_train.sh (exit codes)."""
import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/usr/bin/env bash\n" + text)
    path.chmod(0o755)
    return path


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path.exists(), f"{path} never appeared"


def test_worker_run_ends_a_stale_tpu_holder_clears_the_lock_and_runs_detached(tmp_path):
    device, lock, logs = tmp_path / "accel0", tmp_path / "libtpu_lockfile", tmp_path / "logs"
    device.touch()
    lock.touch()
    stale = subprocess.Popen(["bash", "-c", f"exec 3<{device}; exec sleep 300"])  # a run that never let go
    fake_train = _script(tmp_path / "python", 'echo "args: $*"; echo "DIFFARIFF_DISTRIBUTED=$DIFFARIFF_DISTRIBUTED"\n'
                                              'ps -o sid= -p $$; exit 75\n')
    env = dict(os.environ, DIFFARIFF_LOGS=str(logs), PYTHON=str(fake_train), LIBTPU_LOCK=str(lock),
               TPU_DEVICES=f"^{device}$", STOP_GRACE="5")
    try:
        time.sleep(0.3)
        start = subprocess.run(["bash", "launch/tpu_run.sh", "start", "--", "--workdir", "gs://b/run one"], cwd=REPO,
                               env=env, capture_output=True, text=True, timeout=60)
        assert start.returncode == 0, start.stderr
        assert f"process {stale.pid} still holds the TPU" in start.stdout
        assert stale.wait(timeout=10) is not None  # ended before the new run started
        assert not lock.exists()
        _wait_for(logs / "train.status")
    finally:
        if stale.poll() is None:
            stale.kill()
    assert (logs / "train.status").read_text().strip() == "75"
    log = next(logs.glob("train-*.log")).read_text().splitlines()
    assert log[0] == "args: -m diffariff_jax.train --workdir gs://b/run one" and log[1] == "DIFFARIFF_DISTRIBUTED=1"
    group = int((logs / "train.pid").read_text())
    assert int(log[2]) == group != os.getsid(0)  # a session of its own: the ssh session's hangup cannot reach it
    status = subprocess.run(["bash", "launch/tpu_run.sh", "status"], cwd=REPO, env=env, capture_output=True, text=True)
    assert status.stdout.split()[0::2] == ["diffariff-status", "exit"] and status.stdout.split()[-1] == "75"


FAKE_GCLOUD = """
echo "$*" >> "$FAKE_LOG"
pop() { local first; first=$(head -n 1 "$1"); sed -i 1d "$1"; echo "$first"; }
case "$*" in
  *" describe "*) pop "$FAKE_STATES" ;;
  *"tpu_run.sh status"*)
    answer=$(pop "$FAKE_POLLS")
    [ "$answer" = FAIL ] && exit 255
    tr ';' '\\n' <<< "$answer" ;;
esac
exit 0
"""


def _tpu_train(tmp_path, states, polls, *flags, aot_exit=0):
    """tpu_train.sh against a fake gcloud, and a fake python whose `-m diffariff_jax.aot` exits aot_exit
    (0 fits, 3 does not fit) after logging its arguments to aot.log."""
    bin_dir = tmp_path / "bin"
    _script(bin_dir / "gcloud", FAKE_GCLOUD)
    fake_python = _script(bin_dir / "python", f'echo "$*" >> "{tmp_path / "aot.log"}"; exit {aot_exit}\n')
    (tmp_path / "states").write_text("".join(f"{s}\n" for s in states))
    (tmp_path / "polls").write_text("".join(f"{p}\n" for p in polls))
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=str(tmp_path / "gcloud.log"),
               FAKE_STATES=str(tmp_path / "states"), FAKE_POLLS=str(tmp_path / "polls"), PYTHON=str(fake_python))
    proc = subprocess.run(["bash", "launch/tpu_train.sh", "--name", "pod", "--workdir", "gs://b/run", "--code",
                           "https://example.org/repo.git", "--poll", "0", *flags], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    log = tmp_path / "gcloud.log"
    calls = log.read_text().splitlines() if log.exists() else []
    return proc.returncode, calls, proc.stdout + proc.stderr


def test_a_config_that_does_not_fit_warns_before_the_slice_is_created_or_stops_with_require_fit(tmp_path):
    code, calls, out = _tpu_train(tmp_path / "warn", [""], ["diffariff-status w0 exit 0"], "--accelerator-type",
                                  "v5p-64", "--", "--config.train.batch_size=512", "--seed=3", aot_exit=3)
    assert code == 0 and "warning: configs/ldm.py:paper does not fit v5p-64" in out
    (aot,) = (tmp_path / "warn" / "aot.log").read_text().splitlines()
    assert aot.startswith("-m diffariff_jax.aot --config configs/ldm.py:paper --topology v5p-64 --programs train")
    assert aot.endswith("--config.train.batch_size=512")  # --seed=3 is the train command's alone
    assert any(" create pod " in c for c in calls)
    code, calls, out = _tpu_train(tmp_path / "stop", [""], [], "--require-fit", aot_exit=3)
    assert code == 1 and "--require-fit: not launching" in out
    assert calls == [] and (tmp_path / "stop" / "aot.log").exists()  # nothing created, nothing paid for


def test_a_slice_being_repaired_is_waited_for_not_deleted_and_the_workers_verdict_is_returned(tmp_path):
    polls = ["diffariff-status w0 running;diffariff-status w1 running",
             "diffariff-status w0 exit 75;diffariff-status w1 running",
             "diffariff-status w0 exit 75;diffariff-status w1 exit 75"]
    rc, calls, out = _tpu_train(tmp_path, ["CREATING", "REPAIRING", "READY"], polls)
    assert rc == 75, out
    assert not any(" delete " in c or " create " in c for c in calls)
    assert sum(" describe " in c for c in calls) == 3 and "is REPAIRING; waiting" in out
    start = next(c for c in calls if "tpu_run.sh start" in c)
    assert "--worker=all" in start and "| tee" not in start  # detached on the workers, no pipe to break
    assert sum("tpu_run.sh status" in c for c in calls) == 3


def test_a_preempted_slice_is_recreated_and_an_error_of_one_worker_wins(tmp_path):
    rc, calls, out = _tpu_train(tmp_path, ["PREEMPTED"], ["diffariff-status w0 exit 75;diffariff-status w1 exit 70"])
    assert rc == 70, out
    assert [c.split()[3] for c in calls[:3]] == ["describe", "delete", "create"]


def test_unreachable_workers_are_a_retryable_failure(tmp_path):
    rc, calls, out = _tpu_train(tmp_path, ["READY", "READY", "READY"], ["FAIL", "FAIL", "FAIL"],
                                "--max-poll-failures", "3")
    assert rc == 76, out
    assert out.count("could not reach the workers") == 3


def test_a_slice_preempted_while_polling_ends_the_wait_at_once(tmp_path):
    rc, calls, out = _tpu_train(tmp_path, ["READY", "PREEMPTED"], ["diffariff-status w0 running", "FAIL", "FAIL"])
    assert rc == 76, out
    assert out.count("could not reach the workers") == 1 and "slice state: PREEMPTED" in out


def test_babysit_retries_everything_but_success_and_user_errors(tmp_path):
    codes = tmp_path / "codes"
    fake = _script(tmp_path / "tpu_train.sh", f'code=$(head -n 1 {codes}); sed -i 1d {codes}; echo "run $*"; '
                                               'exit "$code"\n')

    def babysit(sequence):
        codes.write_text("".join(f"{c}\n" for c in sequence))
        proc = subprocess.run(["bash", "launch/tpu_babysit.sh", "--wait", "0", "--name", "pod"], cwd=REPO,
                              env=dict(os.environ, TPU_TRAIN=str(fake)), capture_output=True, text=True, timeout=60)
        return proc.returncode, proc.stdout.count("run --name pod")

    assert babysit([70, 76, 75, 255, 0]) == (0, 5)  # a crash, gcloud down, a preemption, ssh lost: all relaunched
    assert babysit([75, 1]) == (1, 2)  # a user error stops it
    assert babysit([2]) == (2, 1)
