"""One SLURM -> torch.distributed derivation: plain `srun` tasks and submitit jobs agree."""

from __future__ import annotations

import os
import random

import pytest

from rcs.utils.distributed import detect_env, master_port, slurm_env_vars

VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
        "RCS_MASTER_PORT", "SLURM_RESTART_COUNT", "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST")


@pytest.fixture
def srun_task(monkeypatch):
    for k in VARS:  # set, then removed: monkeypatch restores each (exported ones included)
        monkeypatch.setenv(k, "")
        monkeypatch.delenv(k)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_NNODES", "2")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    return monkeypatch


def test_master_port_formula(monkeypatch):
    monkeypatch.delenv("RCS_MASTER_PORT", raising=False)
    assert master_port("123", 2) == random.Random("123/2").randrange(20000, 60000)
    assert master_port("123", 0) != master_port("123", 1)  # a requeued run: a fresh port
    monkeypatch.setenv("RCS_MASTER_PORT", "29999")
    assert master_port("123", 5) == 29999


def test_srun_task_gets_the_job_port_and_layout(srun_task):
    env = detect_env()
    assert (env.rank, env.local_rank, env.world_size) == (3, 1, 4)
    assert os.environ["MASTER_ADDR"] == "127.0.0.1"  # no node list: this host
    assert os.environ["MASTER_PORT"] == str(random.Random("123/0").randrange(20000, 60000))
    v = slurm_env_vars()
    assert v["LOCAL_WORLD_SIZE"] == "2" and v["RANK"] == "3" and v["WORLD_SIZE"] == "4"


def test_srun_task_keeps_a_port_that_is_already_set(srun_task):
    srun_task.setenv("MASTER_PORT", "31000")
    srun_task.setenv("SLURM_RESTART_COUNT", "1")
    detect_env()
    assert os.environ["MASTER_PORT"] == "31000"
    assert slurm_env_vars()["MASTER_PORT"] == str(random.Random("123/1").randrange(20000, 60000))


def test_submitit_job_and_srun_task_derive_the_same_values(srun_task):
    submitit = pytest.importorskip("submitit")
    from rcs.launch.job import export_distributed

    class Env:  # submitit's view of the same task
        global_rank, num_tasks, num_nodes, local_rank, job_id = 3, 4, 2, 1, "123"
        hostnames = ["127.0.0.1"]

    srun_task.setattr(submitit, "JobEnvironment", Env)
    srun_task.setattr(submitit.helpers, "JobEnvironment", Env)
    expected = slurm_env_vars()
    assert export_distributed() == expected
