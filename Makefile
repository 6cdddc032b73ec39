# Each target does its own set-up: a virtual environment in .venv with logstack installed.
# CI runs the same targets (see .ci/run).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOG ?=
DEMO_HOME ?= $(CURDIR)/.logstack/demo
DEV_HOME ?= $(CURDIR)/.logstack/dev

.PHONY: install demo test lint dev clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Install logstack and its test tools into .venv.
install: $(STAMP)

# The main job end to end on the embedded broker: a generated sample, or LOG=path/to/file.
demo: $(STAMP)
	LOGSTACK_HOME=$(DEMO_HOME) $(BIN)/logstack demo --fresh $(if $(LOG),--log $(LOG))

# Every test: parser units, enrichment, the broker, the dataflow and Dagster end to end.
test: $(STAMP)
	$(BIN)/python -m pytest -q

# The Dagster UI and daemon on 127.0.0.1, with state under .logstack/dev.
dev: $(STAMP)
	mkdir -p $(DEV_HOME)/dagster && cp dagster.yaml $(DEV_HOME)/dagster/dagster.yaml
	LOGSTACK_HOME=$(DEV_HOME) DAGSTER_HOME=$(DEV_HOME)/dagster \
		$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Remove the virtual environment and all local state.
clean:
	rm -rf $(VENV) .logstack
