# The two entry points of a fresh clone (see README.md).
.PHONY: setup demo test bench

setup:
	bash scripts/setup.sh

# The main job on the built-in default: the synthetic-world demo.
demo: setup
	.venv/bin/xgenmm demo $(ARGS)

test: setup
	.venv/bin/python -m pytest -q $(ARGS)

bench: setup
	.venv/bin/python benchmarks/bench_model.py
