# `make demo` and `make test` each create/refresh .venv idempotently, then run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-floor venv clean

venv: $(STAMP)

# Re-install only when pyproject.toml changed (or the venv is missing/broken).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

# The demo replaces its own folders (DEMO_DIR) every time, so it can be run again and again; `make clean` removes
# them. DEMO_ARGS adds flags, e.g. make demo DEMO_ARGS="--num_train_epochs 12".
DEMO_DIR  ?= outputs/demo
DEMO_ARGS ?=
demo: $(STAMP)
	$(PY) recipes/quickstart.py --overwrite --output_dir $(DEMO_DIR) $(DEMO_ARGS)
	@$(PY) .ci/demo_table.py $(DEMO_DIR) README.md

test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q tests

# The suite's fast subset against the lowest versions pyproject.toml allows: the floors of transformers, timm,
# accelerate, datasets, evaluate and huggingface_hub (plus what pip's resolver says they need, e.g. datasets 3.0 →
# dill 0.3.8, fsspec 2024.6.1) go into .floor and shadow the venv's through PYTHONPATH; torch stays the venv's.
# .ci/floor.py check fails unless the floors are what is imported. About 3 minutes.
FLOOR       := .floor
FLOOR_TESTS := tests/test_losses.py tests/test_config.py tests/test_split_list.py tests/test_timm_contract.py \
	tests/test_metrics.py tests/test_data.py tests/test_trainer.py tests/test_evaluation.py \
	tests/test_virtual_examples.py tests/test_initial_weights.py \
	tests/test_hub.py::test_push_then_load_everywhere \
	"tests/test_recipes.py::test_recipe_runs_on_a_copy_of_its_data[cifar100_lt]" \
	tests/test_recipes.py::test_imagenet_lt_recipe_under_accelerate_launch_two_processes

$(FLOOR)/.installed: pyproject.toml .ci/floor.py $(STAMP)
	rm -rf $(FLOOR)
	$(PY) .ci/floor.py install $(FLOOR)
	@touch $@

test-floor: $(FLOOR)/.installed
	PYTHONPATH=$(FLOOR) $(PY) .ci/floor.py check $(FLOOR)
	PYTHONPATH=$(FLOOR) HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q $(FLOOR_TESTS)

clean:
	rm -rf outputs .pytest_cache
