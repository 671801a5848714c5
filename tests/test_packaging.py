"""The package outside its checkout: shipped configs by name, relative data roots, and a wheel
installed into a fresh venv that trains from a packaged config in another folder."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rcs.cli.main import main
from rcs.config import load_config
from rcs.config.resources import configs_dir, find_config, list_configs

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_configs_load_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not the checkout
    names = [n for n, _ in list_configs()]
    assert "cifar10_acl_rcs" in names and "tiny/cifar10_acl_rcs" in names
    assert len(names) == len(list((ROOT / "configs").rglob("*.yaml")))
    cfg = load_config("cifar10_acl_rcs")
    assert cfg.selection.fraction == 0.2 and cfg.train.epochs == 1000
    tiny = load_config("tiny/cifar10_acl_rcs")  # follows base: ../cifar10_acl_rcs.yaml
    assert tiny.model.width == 8 and tiny.train.method == "acl"
    assert find_config("configs/tiny/cifar10_acl_rcs.yaml") == find_config("tiny/cifar10_acl_rcs")
    assert main(["config", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny/cifar10_subset_acl_rcs" in out and str(configs_dir()) in out
    assert main(["config", "show", "-c", "no_such_config"]) == 2
    err = capsys.readouterr().err
    assert "no shipped config has that name" in err and "cifar10_acl_rcs" in err


def test_relative_data_root_resolves_against_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "proj" / "cfgs").mkdir(parents=True)
    (tmp_path / "proj" / "data").mkdir()
    (tmp_path / "proj" / "cfgs" / "base.yaml").write_text(
        "data: {name: npz, root: ../data/base.npz}\neval: {corruptions_root: ../c}\n")
    (tmp_path / "proj" / "cfgs" / "sub").mkdir()
    (tmp_path / "proj" / "cfgs" / "sub" / "child.yaml").write_text(
        "base: ../base.yaml\ndata: {cache_dir: cache}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config("proj/cfgs/sub/child.yaml")
    # each relative path is taken from the file that sets it
    assert cfg.data.root == str(tmp_path / "proj" / "data" / "base.npz")
    assert cfg.eval.corruptions_root == str(tmp_path / "proj" / "c")
    assert cfg.data.cache_dir == str(tmp_path / "proj" / "cfgs" / "sub" / "cache")
    # --set values stay relative to the working directory
    cfg = load_config("proj/cfgs/sub/child.yaml", ["data.root=mine.npz"])
    assert cfg.data.root == "mine.npz"


def test_the_subset_config_finds_the_real_data_from_another_folder(tmp_path, monkeypatch,
                                                                    cifar10_subset_path):
    from rcs.data import build_dataset

    monkeypatch.chdir(tmp_path)
    cfg = load_config(ROOT / "configs" / "tiny" / "cifar10_subset_acl_rcs.yaml",
                      ["data.limit=64"])
    assert Path(cfg.data.root).resolve() == cifar10_subset_path.resolve()
    assert len(build_dataset(cfg.data)) == 64


def test_python_dash_m_rcs_is_the_command():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-m", "rcs", "--version"], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("rcs ")


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_trains_from_a_packaged_config(tmp_path):
    """Build the wheel, install it (no deps: torch etc. come from this interpreter's site
    folders) into a fresh venv, and run it from an unrelated folder with no PYTHONPATH."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", RCS_QUIET="1")

    def run(*cmd: str | Path, cwd: Path = tmp_path) -> str:
        r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                           cwd=cwd, timeout=600)
        assert r.returncode == 0, f"{cmd}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout

    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps",
        "-w", tmp_path / "dist", src)
    wheel = next((tmp_path / "dist").glob("rcs_toolkit-*.whl"))
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", venv)
    py = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps",
        "--no-index", wheel)
    # the dependencies of this interpreter (torch, numpy, ...), after the venv's own folder
    venv_site = Path(run(py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
                     .strip())
    dep_dirs = [d for d in site.getsitepackages() if Path(d).is_dir()]
    (venv_site / "zz_test_deps.pth").write_text("\n".join(dep_dirs) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(py, "-c", "import rcs; print(rcs.__file__)", cwd=elsewhere)
    assert where.startswith(str(venv)), where
    listed = run(venv / "bin" / "rcs", "config", "list", cwd=elsewhere)
    assert "tiny/cifar10_acl_rcs" in listed and str(venv) in listed
    assert run(py, "-m", "rcs", "--version", cwd=elsewhere).startswith("rcs ")
    run(venv / "bin" / "rcs", "train", "-c", "tiny/cifar10_acl_rcs", "--out", "run",
        "--set", "train.epochs=2", "--set", "data.synthetic_size=96",
        "--set", "train.batch_size=32", "--set", "selection.candidate_batch=32",
        "--set", "train.channels_last=false", "--device", "cpu", cwd=elsewhere)
    summary = yaml.safe_load((elsewhere / "run" / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["selections"] == 1
    run(venv / "bin" / "rcs", "export", "--checkpoint", "run/checkpoint.pt", cwd=elsewhere)
    assert (elsewhere / "run" / "export" / "encoder.safetensors").is_file()


def _kcenter() -> None:
    import numpy as np

    from rcs.selection.kcenter import covering_radius

    covering_radius(np.zeros((4, 2), np.float32), np.arange(2))


def _plots() -> None:
    from rcs.report.render import _plt

    _plt()


def _slurm() -> None:
    from rcs.config import SlurmConfig
    from rcs.launch.settings import make_executor

    make_executor(SlurmConfig(executor="local"), "/tmp/rcs-never-written", "job")


@pytest.mark.parametrize("module,extra,call", [("faiss", "cpu", _kcenter),
                                               ("matplotlib", "plots", _plots),
                                               ("submitit", "slurm", _slurm)])
def test_a_missing_optional_package_names_its_extra(monkeypatch, module, extra, call):
    from rcs.errors import NotAvailableError

    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    with pytest.raises(NotAvailableError, match=rf"pip install 'rcs-toolkit\[{extra}\]'"):
        call()


def test_declared_dependencies_are_the_ones_imported():
    """Every core dependency is imported by rcs, every third-party import is declared (core or
    an extra), the version has one source and the licence file matches the declared one."""
    import ast

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    module_of = {"pyyaml": "yaml", "pillow": "PIL", "faiss-cpu": "faiss", "faiss-gpu": "faiss",
                 "pyautoattack": "pyautoattack"}

    def modules(reqs: list[str]) -> set[str]:
        names = {r.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
                 for r in reqs}
        return {module_of.get(n, n.replace("-", "_")) for n in names if n != "rcs-toolkit"}

    core = modules(project["dependencies"])
    extras = set().union(*(modules(v) for v in project["optional-dependencies"].values()))
    imported: set[str] = set()
    for folder in ("rcs",):
        for f in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    imported |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    third_party = {m for m in imported - set(sys.stdlib_module_names)
                   if m != "rcs"}
    assert core <= imported, f"declared but never imported: {core - imported}"
    assert "scipy" in core and "scipy" in imported  # randomized smoothing's Clopper-Pearson
    # tensorboard comes in through torch.utils.tensorboard; autoattack is the reference repo
    undeclared = third_party - core - extras - {"autoattack"}
    assert not undeclared, f"imported but not declared: {undeclared}"
    assert "version" not in project and "version" in project["dynamic"]
    assert project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
