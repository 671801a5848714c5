# The two commands of the README. Both set everything up on a fresh machine first.
.PHONY: setup demo test test-all test-slurm slurm-up slurm-down lint

setup:
	@bash scripts/setup.sh

demo: setup            ## run the whole pipeline on the built-in small default
	.venv/bin/rcs demo

test: setup            ## the default test suite (CI runs it, then test-slurm: see .ci/run)
	.venv/bin/python -m pytest -q

test-all: setup        ## also the slow tests
	.venv/bin/python -m pytest -q -m "not gpu and not slurm"

test-slurm: setup slurm-up   ## the SLURM tests, against the local one-node cluster
	.venv/bin/python -m pytest -q -m slurm

slurm-up:              ## start the local SLURM cluster (root; idempotent; see slurm/README.md)
	bash slurm/start_cluster.sh

slurm-down:            ## stop it
	bash slurm/stop_cluster.sh

lint: setup            ## ruff, and the layer contract of pyproject.toml (docs/ARCHITECTURE.md)
	.venv/bin/ruff check .
	.venv/bin/lint-imports
