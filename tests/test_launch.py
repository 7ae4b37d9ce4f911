"""The launch scripts' --dry-run listings: the commands a TPU slice or a GPU cluster would run."""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _dry(script, *args, env=None):
    proc = subprocess.run(["bash", f"launch/{script}", "--dry-run", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, **(env or {})))
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line.startswith("+ ")]


def test_tpu_train_dry_run():
    lines = _dry("tpu_train.sh", "--name", "pod", "--zone", "us-central2-b", "--accelerator-type", "v4-32",
                 "--workdir", "gs://b/runs/ldm", "--config", "configs/ldm.py:paper", "--spot", "--",
                 "--config.mesh.fsdp=4")
    # first the fit check, compiled here for the slice's chips with the train command's --config overrides
    assert "python -m diffariff_jax.aot --config configs/ldm.py:paper --topology v4-32 --programs train --out " in lines[0]
    assert lines[0].endswith("diffariff-aot-pod.json --config.mesh.fsdp=4")
    assert lines[1] == ("+ gcloud compute tpus tpu-vm create pod --zone us-central2-b --accelerator-type v4-32 "
                        "--version tpu-ubuntu2204-base --spot")
    assert "--worker=all" in lines[3] and lines[-2].startswith("+ gcloud compute tpus tpu-vm ssh pod")
    assert ("bash launch/tpu_setup.sh && bash launch/tpu_run.sh start -- --config configs/ldm.py:paper "
            "--workdir gs://b/runs/ldm --config.mesh.fsdp=4'" in lines[-2])
    assert lines[-1].endswith("--worker=all --command 'bash ~/diffariff-jax/launch/tpu_run.sh status'")


def test_tpu_train_dry_run_can_skip_the_fit_check():
    lines = _dry("tpu_train.sh", "--name", "pod", "--workdir", "gs://b/runs/ldm", "--skip-aot-check")
    assert lines[0].startswith("+ gcloud compute tpus tpu-vm create pod") and "diffariff_jax.aot" not in "".join(lines)


def test_tpu_train_needs_a_workdir():
    proc = subprocess.run(["bash", "launch/tpu_train.sh", "--dry-run"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "--workdir is required" in proc.stderr


def test_gpu_train_dry_run_modes():
    single = _dry("gpu_train.sh", "--gpus", "4", "--workdir", "runs/x", "--", "--config.train.batch_size=8")
    assert single == ["+ .venv/bin/python -m diffariff_jax.train --config configs/ldm.py:paper --workdir runs/x "
                      "--config.train.batch_size=8"]
    slurm = _dry("gpu_train.sh", "--workdir", "runs/x", env={"SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "3",
                                                             "SLURM_JOB_NODELIST": "gpu[1-3]"})
    assert slurm[0].startswith("+ srun --ntasks-per-node=1 --nodes=3 bash -c ")
    assert "--num_processes=3 --process_id=$SLURM_PROCID" in slurm[0]
    explicit = _dry("gpu_train.sh", "--coordinator", "h0:99", "--num-nodes", "2", "--node-rank", "1",
                    "--workdir", "runs/x")
    assert explicit[0].endswith("--coordinator_address=h0:99 --num_processes=2 --process_id=1")


def test_gpu_train_under_slurm_runs_one_task_per_node_with_explicit_ids(tmp_path):
    """Inside `sbatch -N 3`: srun starts one task per node, each told the coordinator (first host), the count
    and its SLURM_PROCID explicitly, which also switches JAX's one-GPU-per-task SLURM detection off."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "srun": '#!/usr/bin/env bash\necho "srun $*" | cut -d" " -f1-3 >&2\n'
                'while [[ "$1" == --* ]]; do shift; done\nSLURM_PROCID=2 SLURM_LOCALID=0 exec "$@"\n',
        "scontrol": '#!/usr/bin/env bash\n[ "$1 $2" = "show hostnames" ] && printf "gpu1\\ngpu2\\ngpu3\\n"\n',
        "python": '#!/usr/bin/env bash\necho "train $*"\n',
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHON=str(bin_dir / "python"), SLURM_JOB_ID="7",
               SLURM_JOB_NUM_NODES="3", SLURM_JOB_NODELIST="gpu[1-3]")
    proc = subprocess.run(["bash", "launch/gpu_train.sh", "--workdir", "/shared/runs/x"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "srun --ntasks-per-node=1 --nodes=3" in proc.stderr
    assert proc.stdout.strip() == ("train -m diffariff_jax.train --config configs/ldm.py:paper --workdir /shared/runs/x "
                                   "--coordinator_address=gpu1:12355 --num_processes=3 --process_id=2")
