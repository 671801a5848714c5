# The two commands of the README. Both set everything up on a fresh machine first.
.PHONY: setup demo test test-all lint

setup:
	@bash scripts/setup.sh

demo: setup            ## run the whole pipeline on the built-in small default
	.venv/bin/rcs demo

test: setup            ## the default test suite (CI runs exactly this)
	.venv/bin/python -m pytest -q

test-all: setup        ## also the slow tests
	.venv/bin/python -m pytest -q -m "not gpu and not slurm"

lint: setup
	.venv/bin/ruff check .
