"""Build hook only (the project metadata is in pyproject.toml): a wheel carries the repository's
configs/ and slurm/profiles/ as package data, rcs/_data/configs and rcs/_data/slurm_profiles,
so an installed rcs finds its published configs and cluster profiles (rcs/config/resources.py).
An editable install reads the repository's folders directly and copies nothing."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = {"configs": ROOT / "configs", "slurm_profiles": ROOT / "slurm" / "profiles"}


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name, src in SHIPPED.items():
            if not src.is_dir():
                raise SystemExit(f"setup.py: {src} is missing; build from a full checkout or sdist")
            dst = Path(self.build_lib) / "rcs" / "_data" / name
            if dst.exists():
                shutil.rmtree(dst)
            for f in sorted(src.rglob("*.yaml")):
                target = dst / f.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)


setup(cmdclass={"build_py": BuildPyWithData})
