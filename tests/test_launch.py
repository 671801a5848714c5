"""SLURM launching without a cluster: settings, profiles, sbatch text, sweeps, collection, the
job's requeue decision, distributed selection in the trainer and the shared ImageNet-32 cache.

The same code against a real SLURM cluster is tested in test_slurm.py (marked ``slurm``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from rcs.cli.main import build_parser, main
from rcs.config import load_config
from rcs.errors import ConfigError
from tests.conftest import tiny

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- settings
def test_slurm_settings_order_profile_file_set_flags(tmp_path):
    from rcs.launch.settings import file_slurm_section, resolve_slurm

    (tmp_path / "base.yaml").write_text("slurm: {nodes: 3, qos: low}\n")
    (tmp_path / "cfg.yaml").write_text("base: base.yaml\nslurm: {profile: gpu-4x, qos: high}\n")
    section = file_slurm_section(tmp_path / "cfg.yaml")
    assert section == {"nodes": 3, "qos": "high", "profile": "gpu-4x"}
    s = resolve_slurm(section)
    # the profile fills what the file does not say; the file wins over the profile
    assert (s.gpus_per_node, s.cpus_per_task, s.mem_gb, s.time_min) == (4, 10, 240.0, 2880)
    assert (s.nodes, s.qos, s.ntasks_per_node()) == (3, "high", 4)
    s = resolve_slurm(section, ["slurm.nodes=2", "train.epochs=5", "slurm.mem_gb=100"],
                      {"nodes": 5, "partition": "p", "account": None})
    assert (s.nodes, s.mem_gb, s.partition, s.account) == (5, 100.0, "p", "")
    s = resolve_slurm({}, [], {"profile": "local"})
    assert (s.partition, s.cpus_per_task, s.ntasks_per_node()) == ("debug", 1, 1)


def test_every_shipped_profile_is_valid():
    from rcs.launch.settings import list_profiles, resolve_slurm

    names = list_profiles()
    assert {"local", "gpu-1x", "gpu-4x", "gpu-8x", "imagenet32-2x8"} <= set(names)
    for name in names:
        resolve_slurm({"profile": name})


@pytest.mark.parametrize("overrides,match", [
    (["slurm.gpus_per_node=4", "slurm.tasks_per_node=2"], "one task per GPU"),
    (["slurm.extra_sbatch=[exclusive]"], "long sbatch option"),
    (["slurm.time_min=1"], "signal_delay_s=120 must be"),
    (["slurm.executor=pbs"], "slurm.executor='pbs'"),
    (["slurm.nodes=0"], "slurm.nodes=0 must be > 0"),
    (["slurm.partion=gpu"], "Did you mean 'slurm.partition'"),
])
def test_slurm_config_errors_are_clear(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_unknown_profile_lists_the_available_ones(tmp_path):
    from rcs.launch.settings import load_profile, resolve_slurm

    with pytest.raises(ConfigError, match=r"unknown SLURM profile 'nope'.*gpu-8x.*local"):
        resolve_slurm({"profile": "nope"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpus: 4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*unknown config key 'slurm.gpus'"):
        load_profile(str(bad))


def test_sbatch_script_one_task_per_gpu(monkeypatch, tmp_path):
    """What submitit writes for a 2-node x 8-GPU profile: one task per GPU, the checkpoint
    signal before the time limit, and every setting of the profile."""
    from submitit.slurm.slurm import SlurmExecutor

    from rcs.launch.settings import make_executor, resolve_slurm

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # no srun here
    monkeypatch.setattr("rcs.launch.settings.require_slurm", lambda: None)
    s = resolve_slurm({"profile": "imagenet32-2x8"}, ["slurm.partition=gpu", "slurm.account=a1"],
                      {"qos": "q", "constraint": "h100", "setup": ["module load cuda"],
                       "extra_sbatch": ["--mail-type=END"]})
    ex = make_executor(s, tmp_path / "%j", "rcs-train-x")
    text = ex._executor._make_submission_file_text("python -m x", "uid")
    for line in ("--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--cpus-per-task=12",
                 "--mem=480GB", "--time=2880", "--signal=USR2@600", "--partition=gpu",
                 "--account=a1", "--qos=q", "--constraint=h100", "--exclusive",
                 "--mail-type=END", "--job-name=rcs-train-x"):
        assert f"#SBATCH {line}\n" in text, line
    assert "module load cuda" in text and "srun" in text
    assert ex._executor.max_num_timeout == 20


# ----------------------------------------------------------------------------- sweeps, plans
def test_sweep_points():
    from rcs.launch.sweep import expand

    pts = expand(["fraction=0.1,0.2", "seed=0,1,2"])
    assert len(pts) == 6 and pts[0].name == "fraction-0.1_seed-0"
    assert pts[-1].overrides == ("selection.fraction=0.2", "seed=2")
    pts = expand(["model.blocks=[1,1],[2,2]", "train.attack.eps=8/255"])
    assert [p.name for p in pts] == ["blocks-1_1_eps-8_255", "blocks-2_2_eps-8_255"]
    assert pts[1].overrides[0] == "model.blocks=[2,2]"
    pts = expand(["train.epochs=1,2", "selection.epochs=3"])  # same short name: full keys
    assert pts[0].name == "train-epochs-1_selection-epochs-3"
    for bad in (["fraction"], ["seed=1,1"], ["seed=1", "seed=2"]):
        with pytest.raises(ConfigError):
            expand(bad)
    assert expand([]) == []


def _plan(argv):
    from rcs.cli.slurm_flags import slurm_parser
    from rcs.cli.slurm_options import plan

    sargs, rest = slurm_parser().parse_known_args(argv[1:])
    return plan(argv[0], build_parser().parse_args([argv[0]] + rest), rest, sargs)


def test_plan_strips_slurm_options_and_lays_out_runs(tmp_path):
    out = tmp_path / "sw"
    p = _plan(["train", "--out", str(out), "--profile", "local", "--tasks-per-node", "2",
               "--sweep", "fraction=0.25,0.5", "--sweep", "seed=0,1", "--set", "train.epochs=2",
               "--wait", "--sbatch=--exclusive"])
    assert len(p.argvs) == 4 and p.slurm.ntasks_per_node() == 2
    assert p.slurm.extra_sbatch == ["--exclusive"] and p.folder == str(out / "slurm" / "%j")
    first = p.argvs[0]
    assert first[:5] == ["train", "--out", str(out), "--set", "train.epochs=2"]
    assert first[-6:] == ["--set", "selection.fraction=0.25", "--set", "seed=0", "--out",
                          str(out / "fraction-0.25_seed-0")]
    assert not {"--profile", "--tasks-per-node", "--sweep", "--wait"} & set(first)
    # each point's config is checked before anything is submitted
    with pytest.raises(ConfigError, match="selection.fraction=1.5"):
        _plan(["train", "--out", str(out), "--sweep", "fraction=0.5,1.5"])
    # select: one file per point; other commands run one task
    p = _plan(["select", "--checkpoint", "c.pt", "--out", str(tmp_path / "c.npz"),
               "--profile", "gpu-8x", "--sweep", "fraction=0.1,0.2"])
    assert [a[-1] for a in p.argvs] == [str(tmp_path / "c_fraction-0.1.npz"),
                                        str(tmp_path / "c_fraction-0.2.npz")]
    assert (p.slurm.nodes, p.slurm.ntasks_per_node(), p.slurm.gpus_per_node) == (1, 1, 1)
    assert p.notes and "one task" in p.notes[0]
    with pytest.raises(ConfigError, match="--sweep is available for train and select"):
        _plan(["eval", "--checkpoint", "c.pt", "--sweep", "seed=0,1"])


def test_global_batch_must_split_over_the_jobs_ranks(tmp_path):
    """train.batch_size is the global batch: a job whose ranks do not divide it is refused
    before it is submitted (also per sweep point); per_rank_batch gives each rank's share."""
    from rcs.utils.distributed import per_rank_batch

    assert per_rank_batch(512, 8) == 64 and per_rank_batch(512, 1) == 512
    with pytest.raises(ConfigError, match=r"train.batch_size=512 is the global batch \(all "
                       r"ranks together\) and must be divisible by the 3 DDP ranks; .*"
                       r"--set train.batch_size=510 or 513"):
        per_rank_batch(512, 3)
    out = str(tmp_path / "r")
    _plan(["train", "--out", out, "--profile", "local", "--tasks-per-node", "4"])
    with pytest.raises(ConfigError, match="divisible by the 3 DDP ranks"):
        _plan(["train", "--out", out, "--profile", "local", "--tasks-per-node", "3"])
    with pytest.raises(ConfigError, match="train.batch_size=66 is the global batch"):
        _plan(["train", "--out", out, "--profile", "local", "--nodes", "2", "--tasks-per-node",
               "2", "--sweep", "train.batch_size=64,66"])


def test_slurm_options_need_slurm_switch(capsys, tmp_path):
    assert main(["train", "--out", str(tmp_path), "--nodes", "2"]) == 2
    assert "given without --slurm" in capsys.readouterr().err


def test_no_slurm_here_is_a_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, srun, sacct
    assert main(["submit", "train", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "SLURM is not available here" in err and "slurm/start_cluster.sh" in err
    assert main(["train", "--slurm", "--out", str(tmp_path / "r")]) == 2
    assert "SLURM is not available here" in capsys.readouterr().err


# ----------------------------------------------------------------------------- collect
def test_collect_sweep_table(tmp_path):
    from rcs.launch.collect import collect

    for name, frac, loss in (("fraction-0.25", 0.25, 3.5), ("fraction-0.5", 0.5, 3.25)):
        run = tmp_path / name
        run.mkdir()
        (run / "summary.json").write_text(json.dumps(
            {"method": "acl", "selector": "rcs", "fraction": frac, "epochs": 2,
             "final_loss": loss, "train_seconds": 1.0, "select_seconds": 0.5}))
        (run / "config.yaml").write_text("seed: 7\n")
    jobs = [{"job_id": f"9_{i}", "out": str(tmp_path / f"fraction-{f}"),
             "point": f"fraction-{f}", "overrides": [f"selection.fraction={f}"]}
            for i, f in enumerate(("0.25", "0.5", "0.75"))]
    (tmp_path / "sweep.json").write_text(json.dumps(
        {"axes": [["selection.fraction", ["0.25", "0.5", "0.75"]]], "jobs": jobs}))
    col = collect([tmp_path])
    rows = col["rows"]
    assert [r["selection.fraction"] for r in rows] == ["0.25", "0.5", "0.75"]
    assert [r["status"] for r in rows][:2] == ["done", "done"] and rows[2]["status"] != "done"
    assert rows[0]["final_loss"] == 3.5 and rows[1]["seed"] == 7
    assert col["columns"][:3] == ["run", "selection.fraction", "status"]
    md = (tmp_path / "sweep_summary.md").read_text()
    assert md.count("\n") == 5 and "| fraction-0.75" in md
    assert json.loads((tmp_path / "sweep_summary.json").read_text())["rows"] == rows


# ----------------------------------------------------------------------------- the job
def test_checkpoint_returns_a_resuming_resubmission():
    from rcs.cli.slurm_job import RcsJob

    job = RcsJob(["train", "--out", "x", "--resume", "none"])
    again = job.checkpoint()
    assert isinstance(again.function, RcsJob) and again.function is not job
    assert again.function.argv == job.argv and again.function.restarts == 1
    assert again.args == () and again.kwargs == {}


class _Env:
    def __init__(self, rank, world, nodes=1, job_id="77"):
        self.global_rank, self.num_tasks, self.num_nodes = rank, world, nodes
        self.local_rank, self.job_id, self.hostnames = rank % (world // nodes), job_id, ["n1",
                                                                                         "n2"]


def test_export_distributed(monkeypatch):
    from rcs.launch.job import export_distributed, master_port

    for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK",
              "LOCAL_WORLD_SIZE", "RCS_MASTER_PORT", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(k, raising=False)
    import submitit

    def job_env(env):  # submitit's TorchDistributedEnvironment reads this task's layout
        monkeypatch.setattr(submitit, "JobEnvironment", lambda: env)
        monkeypatch.setattr(submitit.helpers, "JobEnvironment", lambda: env)

    job_env(_Env(5, 8, nodes=2))
    v = export_distributed()
    assert v == {"MASTER_ADDR": "n1", "MASTER_PORT": str(master_port("77", 0)), "RANK": "5",
                 "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    assert os.environ["RANK"] == "5" and 20000 <= int(v["MASTER_PORT"]) < 60000
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # a requeued run gets a fresh port
    job_env(_Env(0, 8, nodes=2))
    assert export_distributed()["MASTER_PORT"] == str(master_port("77", 1))
    job_env(_Env(0, 1))
    assert export_distributed() == {} and "RANK" not in os.environ


def test_after_interrupt_requeues_through_submitit_on_rank0(monkeypatch):
    """Rank 0 with submitit's signal received hands over to submitit's handler (which
    requeues and exits); SIGTERM alone (scancel) exits without a result."""
    from rcs.cli import slurm_job as jobmod
    from rcs.utils.signals import StopFlag

    class Handed(Exception):
        pass

    calls = []

    def handler(signum, frame):
        calls.append(signum)
        raise Handed

    usr = jobmod.usr_signal()
    old = signal.signal(usr, handler)
    try:
        flag = StopFlag((signal.SIGTERM, usr))
        flag._handle(signal.SIGTERM, None)
        flag._handle(usr, None)
        with pytest.raises(Handed):
            jobmod.RcsJob(["train"])._after_interrupt(flag, usr, rank=0)
        assert calls == [usr] and signal.getsignal(usr) == signal.SIG_IGN
        signal.signal(usr, handler)
        monkeypatch.setattr(jobmod, "WAIT_FOR_USR_S", 0.2)
        term = StopFlag((signal.SIGTERM, usr))
        term._handle(signal.SIGTERM, None)
        with pytest.raises(SystemExit) as e:
            jobmod.RcsJob(["train"])._after_interrupt(term, usr, rank=0)
        assert e.value.code == 128 + signal.SIGTERM and calls == [usr]
    finally:
        signal.signal(usr, old)


# ----------------------------------------------------------------------------- distributed
TINY = tiny("train.epochs=1", "selection.method=rcs", "selection.warmup_epochs=0",
            "selection.every=1", "selection.fraction=0.25", "selection.rounds=3",
            "selection.sketch_dim=16", "selection.candidate_batch=16",
            drop=("data.name", "train.log_every"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1",
                      RCS_QUIET="1")
    torch.set_num_threads(1)
    from rcs.train.trainer import Trainer
    from rcs.utils.distributed import cleanup

    trainer = Trainer(load_config(None, TINY + [f"out_dir={out}"]), resume="none")
    assert trainer.sharded_selection
    trainer.fit()
    cleanup(trainer.env)


def test_trainer_shards_rcs_selection_across_ranks(tmp_path, monkeypatch):
    """Under DDP the trainer runs the RCS selector on every rank (gradient shards, greedy on
    rank 0, broadcast): the coreset equals the single-process one (selection before any step,
    so both select with the same initial model)."""
    from rcs.selection import Coreset
    from rcs.train.trainer import Trainer

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for k in ("RANK", "WORLD_SIZE", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(k, raising=False)
    single = Trainer(load_config(None, TINY + [f"out_dir={tmp_path / 'one'}"]), resume="none")
    assert not single.sharded_selection
    single.fit()
    mp.spawn(_train_rank, args=(2, _free_port(), str(tmp_path / "two")), nprocs=2, join=True)
    a = Coreset.load(tmp_path / "one" / "coresets" / "epoch_0001.npz")
    b = Coreset.load(tmp_path / "two" / "coresets" / "epoch_0001.npz")
    assert len(a) == round(0.25 * 86) and np.array_equal(a.indices, b.indices)
    assert a.meta["world_size"] == 1 and b.meta["world_size"] == 2
    assert not list((tmp_path / "two" / "selection").rglob("*.rows"))  # shards cleaned up


def _read_imagenet32(root: str, log: str, barrier, q) -> None:
    import rcs.data.readers.imagenet32 as inet

    original = inet._build

    def logged(files, writer):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return original(files, writer)

    inet._build = logged
    barrier.wait()  # both processes ask for the dataset at the same time
    ds = inet.read_imagenet32(root)
    q.put((len(ds), ds.fingerprint(), type(ds.images).__name__, bool(ds.images.flags.writeable)))


def test_imagenet32_decoded_once_for_two_processes(tmp_path):
    """Two ranks on a node open ImageNet-32 together: one decodes the npz batches into the
    memory-mapped cache (under the file lock), the other waits and maps the same file."""
    rng = np.random.default_rng(0)
    train = tmp_path / "Imagenet32_train_npz"
    train.mkdir()
    for i in range(1, 11):
        np.savez(train / f"train_data_batch_{i}.npz",
                 data=rng.integers(0, 256, (40, 3072), dtype=np.uint8),
                 labels=rng.integers(1, 1001, 40))
    ctx = mp.get_context("spawn")
    barrier, q, log = ctx.Barrier(2), ctx.Queue(), tmp_path / "builds.log"
    procs = [ctx.Process(target=_read_imagenet32, args=(str(tmp_path), str(log), barrier, q))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(log.read_text().split()) == 1  # decoded by one process only
    assert results[0] == results[1] and results[0][0] == 400
    assert results[0][2] == "memmap" and results[0][3] is False  # read-only map, not a copy
    assert len(list((tmp_path / ".rcs_cache").glob("imagenet32_train.images.npy"))) == 1


def test_wrn28_10_configs():
    for name in ("imagenet32_acl_rcs", "imagenet32_sat_rcs"):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        assert cfg.model.arch == "wrn28_10" and cfg.data.name == "imagenet32"
        assert cfg.selection.store == "disk"  # the gradient store is memory-mapped


@pytest.mark.slow
def test_local_executor_runs_the_job_code_without_a_cluster(tmp_path, capsys, monkeypatch):
    """`--executor local`: the same pickled RcsJob in 2 local processes (gloo DDP)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("RCS_QUIET", "1")
    out = tmp_path / "run"
    sets = [a for kv in TINY + ["selection.warmup_epochs=1", "train.epochs=2"]
            for a in ("--set", kv)]
    assert main(["submit", "train", "--executor", "local", "--tasks-per-node", "2",
                 "--time-min", "10", "--out", str(out), "--wait", *sets]) == 0
    assert "| acl" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["selections"] == 1
