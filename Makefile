# Each target does its own set-up: a virtual environment in .venv with logstack installed.
# CI runs the same targets (see .ci/run).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOG ?=
DEMO_HOME ?= $(CURDIR)/.logstack/demo
DEV_HOME ?= $(CURDIR)/.logstack/dev
DAGSTER_PORT ?= 3000
DAGSTER_YAML ?= dagster.yaml

.PHONY: install demo test bench chaos dev clean

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

# Every stage against GoAccess on generated and real logs; results in bench/results/.
# Needs goaccess (apt-get install goaccess). About 35 minutes; see bench/README.md.
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# 1,000,000 lines over 4 partitions, the dataflow SIGKILLed at 10 random moments:
# every record must end up exactly once in the lake or the quarantine.
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py --lines 1000000 --partitions 4 --kills 10 $(CHAOS_ARGS)

# The Dagster UI and daemon on 127.0.0.1, with state under .logstack/dev.
# DAGSTER_YAML=deploy/dagster-postgres.yaml (and DAGSTER_PG_URL) keeps it in PostgreSQL.
dev: $(STAMP)
	mkdir -p $(DEV_HOME)/dagster && cp $(DAGSTER_YAML) $(DEV_HOME)/dagster/dagster.yaml
	LOGSTACK_HOME=$(DEV_HOME) DAGSTER_HOME=$(DEV_HOME)/dagster \
		$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(DAGSTER_PORT)

# Remove the virtual environment and all local state.
clean:
	rm -rf $(VENV) .logstack
