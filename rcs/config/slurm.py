"""The ``slurm`` section: where and how `rcs submit` / ``--slurm`` runs a job."""

from __future__ import annotations

from dataclasses import dataclass, field

from rcs.config.checks import check, check_in


@dataclass
class SlurmConfig:
    """Where and how `rcs submit` / `--slurm` runs a job (submitit on SLURM; see slurm/)."""

    profile: str = ""
    """Cluster profile slurm/profiles/<name>.yaml (or a YAML path) supplying defaults for the
    keys below; keys set explicitly (config file, --set, flags) win over the profile."""
    partition: str = ""
    """SLURM partition (empty: the cluster's default partition)."""
    nodes: int = 1
    """Nodes; `rcs train` runs one DDP group over all of them (other commands use one task)."""
    gpus_per_node: int = 0
    """GPUs per node (0 = a CPU job); rcs runs one task (one DDP rank) per GPU."""
    tasks_per_node: int = 0
    """Tasks (DDP ranks) per node; 0 = automatic: gpus_per_node with GPUs, else 1."""
    cpus_per_task: int = 2
    """CPUs per task (per DDP rank)."""
    mem_gb: float = 8.0
    """Memory per node in GB."""
    time_min: int = 60
    """Time limit of one job run in minutes (a timed-out run checkpoints and requeues itself)."""
    account: str = ""
    """Account charged for the job (empty: the user's default)."""
    qos: str = ""
    """Quality of service (empty: the default)."""
    constraint: str = ""
    """Node features, e.g. 'a100' or 'volta32gb'."""
    array_parallelism: int = 16
    """Maximum array tasks (sweep points) running at the same time."""
    extra_sbatch: list[str] = field(default_factory=list)
    """Extra sbatch options, e.g. ['--exclusive', '--mail-type=END', '--reservation=x']."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run in the job script before the job, e.g. ['module load cuda/12.1']."""
    folder: str = ""
    """Job folder (submitit pickles, per-rank logs); '%j' becomes the job id. Empty: <run>/slurm/%j
    (<run> = the run folder of train, the output folder of select, the checkpoint's folder of
    finetune / eval)."""
    job_name: str = ""
    """Job name (empty: rcs-<command>-<run name>)."""
    signal_delay_s: int = 120
    """Seconds before the time limit at which the job is told to checkpoint and requeue itself."""
    max_timeouts: int = 3
    """How many times a job that reaches its time limit is requeued (preemptions: no limit)."""
    executor: str = "slurm"
    """slurm | local (submitit's local executor: the same job code in local processes, no
    cluster; for tests and debugging)."""

    def ntasks_per_node(self) -> int:
        """Tasks per node after resolving 0 = automatic (one per GPU, else one)."""
        if self.tasks_per_node:
            return self.tasks_per_node
        return self.gpus_per_node if self.gpus_per_node > 0 else 1

    def validate(self) -> None:
        check(self.nodes > 0, f"slurm.nodes={self.nodes} must be > 0")
        check(self.tasks_per_node >= 0, f"slurm.tasks_per_node={self.tasks_per_node} must be "
              ">= 0 (0 = one task per GPU, or 1 without GPUs)")
        check(self.gpus_per_node >= 0, f"slurm.gpus_per_node={self.gpus_per_node} must be >= 0")
        check(not (self.gpus_per_node > 0 and self.tasks_per_node not in
                    (0, self.gpus_per_node)),
              f"slurm.tasks_per_node={self.tasks_per_node} with slurm.gpus_per_node="
              f"{self.gpus_per_node}: rcs runs one task per GPU; set slurm.tasks_per_node=0 "
              "(automatic) or equal to slurm.gpus_per_node")
        check(self.cpus_per_task > 0, f"slurm.cpus_per_task={self.cpus_per_task} must be > 0")
        check(self.mem_gb > 0, f"slurm.mem_gb={self.mem_gb} must be > 0")
        check(self.time_min > 0, f"slurm.time_min={self.time_min} must be > 0")
        check(self.array_parallelism > 0, "slurm.array_parallelism must be > 0")
        check(self.max_timeouts >= 0, "slurm.max_timeouts must be >= 0")
        check(0 <= self.signal_delay_s < self.time_min * 60,
              f"slurm.signal_delay_s={self.signal_delay_s} must be >= 0 and shorter than the "
              f"time limit ({self.time_min * 60} s)")
        check_in("slurm.executor", self.executor, ("slurm", "local"))
        for line in self.extra_sbatch:
            opt = line.strip()
            opt = opt[len("#SBATCH"):].strip() if opt.startswith("#SBATCH") else opt
            check(opt.startswith("--") and len(opt) > 2 and " " not in opt.split("=")[0],
                  f"slurm.extra_sbatch entry {line!r} must be a long sbatch option such as "
                  "'--exclusive' or '--mail-type=END'")
