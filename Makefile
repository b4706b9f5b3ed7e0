# attnbook — the README's two commands are `make book` and `make test`.
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
LOCK    := requirements/lock.txt
PROFILE ?= cpu
JOBS    ?= 1
PIP_VERSION := 26.3

.PHONY: setup book test lint lab lock clean gpu-check

## setup: create .venv with the exact versions of requirements/lock.txt, fetch the widget JavaScript
setup: $(STAMP) .cache/npm/.vendored

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(BIN)/pip install --quiet -c $(LOCK) torch torchvision
	$(BIN)/pip install --quiet -c $(LOCK) -e ".[test,lab]"
	touch $@

# The widget JS is taken from the npm registry (sha1-checked) so that the book's widgets work offline.
.cache/npm/.vendored: lib/attnbook/publish.py | $(STAMP)
	$(BIN)/python -m attnbook.publish vendor
	touch $@

## book: execute every chapter with PROFILE (default cpu) and build the Jupyter Book
book: setup
	$(BIN)/attnbook book --profile $(PROFILE) --jobs $(JOBS)

## test: the house rules (ruff), then the whole test suite (unit tests, smoke runs of every notebook,
## the book, headless Chromium)
test: setup
	$(BIN)/ruff check lib tests benchmarks
	$(BIN)/python -m pytest

## lint: the house rules only (ruff; configuration in pyproject.toml)
lint: setup
	$(BIN)/ruff check lib tests benchmarks

## gpu-check: on a CUDA machine (≤ 8 min on one H100/H200): every chapter's gpu profile with 1 epoch, ResNet-50
## training images/s (224 px, AMP, channels_last), each method's step overhead; report in results/gpu-check/
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py

## lab: Jupyter Lab on nbs/ in the same environment
lab: setup
	$(BIN)/jupyter lab nbs/

## lock: rewrite requirements/lock.txt from the current .venv
lock:
	{ echo "# Exact versions used by the Makefile (pip -c). Regenerate: make lock"; \
	  $(BIN)/pip freeze --exclude-editable | grep -v '^attnbook'; } > $(LOCK)

clean:
	rm -rf book/_build .pytest_cache
