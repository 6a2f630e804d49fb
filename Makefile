# ShopSmart data platform. `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export SHOPSMART_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYTHONDONTWRITEBYTECODE = 1
# MLflow's telemetry looks up a host name: nothing leaves the machine.
export MLFLOW_DISABLE_TELEMETRY = true
PYTEST_ARGS ?=
# The UI listens on loopback only; HOST=0.0.0.0 make ui to expose it (behind auth, please).
HOST ?= 127.0.0.1

.PHONY: install java demo test bench ui backfill lint clean spark-up spark-down \
	serve-features serve-model mlflow-ui

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

java:
	@scripts/ensure-java.sh

demo: install java
	BIN=$(BIN) scripts/demo.sh

test: install java
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Speed and memory of extraction and the Spark transform at volume, against targets
# (BENCH_ORDERS_PER_DAY=100000 by default); results in bench-results/.
bench: install java
	$(BIN)/python scripts/bench.py

# Runs from inside DAGSTER_HOME (holding a copy of dagster.yaml) so that Dagster does not
# warn about the project's own dagster.yaml sitting in the working directory.
ui: install java
	mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	cd $(DAGSTER_HOME) && $(CURDIR)/$(BIN)/dagster dev -h $(HOST) -p $${PORT:-3000} \
	  -w $(CURDIR)/workspace.yaml

# make backfill FROM=2026-01-01 TO=2026-01-14: the whole chain for a date range, as a Dagster
# backfill (uses the Dagster at SHOPSMART_UI_URL, or starts one for the duration).
backfill: install java
	@test -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make backfill FROM=YYYY-MM-DD TO=YYYY-MM-DD"; exit 2; }
	$(BIN)/shopsmart-backfill --from $(FROM) --to $(TO)

# make spark-up: a Spark Connect server from the installed pyspark on 127.0.0.1 (logs and pid
# in .spark_services/); then SHOPSMART_SPARK_REMOTE=sc://127.0.0.1:15002 runs the Spark assets
# through it. SPARK_CONNECT_PORT=… to change the port. make spark-down stops it.
SPARK_CONNECT_PORT ?= 15002
spark-up: install java
	VENV_PYTHON=$(BIN)/python scripts/spark.sh connect-up $(SPARK_CONNECT_PORT)
	@echo "export SHOPSMART_SPARK_REMOTE=sc://127.0.0.1:$(SPARK_CONNECT_PORT)"

spark-down:
	VENV_PYTHON=$(BIN)/python scripts/spark.sh connect-down

# Serving, on 127.0.0.1 (PORT=… to change the port), after make demo:
# Feast's HTTP feature server: POST /get-online-features, e.g.
#   {"feature_service": "customer_propensity", "entities": {"customer_id": [42]}}
serve-features: install
	$(BIN)/shopsmart-features serve --port $${PORT:-6566}

# MLflow's scoring server for the registry's champion: POST /invocations (dataframe_split).
serve-model: install
	$(BIN)/shopsmart-model serve --port $${PORT:-5001}

# MLflow's UI over the tracking store and registry (runs, metrics, versions, aliases).
mlflow-ui: install
	$(BIN)/shopsmart-model ui --port $${PORT:-5000}

lint: install
	$(BIN)/ruff check shopsmart_assets shopsmart_assets_tests
	$(BIN)/ruff format --check shopsmart_assets shopsmart_assets_tests

clean:
	rm -rf $(SHOPSMART_DATA_DIR) $(DAGSTER_HOME) spark-warehouse metastore_db
