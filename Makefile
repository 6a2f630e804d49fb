# ShopSmart data platform. `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export SHOPSMART_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export SPARK_LOCAL_IP ?= 127.0.0.1
# Python caches compiled modules in __pycache__ (git ignores it): the suite, `make demo` and
# `make ui` start hundreds of Python processes (runs, steps' servers, code servers, commands),
# and each would compile the project's modules again. Not inherited from a shell that turns
# the cache off.
unexport PYTHONDONTWRITEBYTECODE
# MLflow's telemetry looks up a host name: nothing leaves the machine.
export MLFLOW_DISABLE_TELEMETRY = true
PYTEST_ARGS ?=
# The UI listens on loopback only; HOST=0.0.0.0 make ui to expose it (behind auth, please).
HOST ?= 127.0.0.1

.PHONY: install java chromium demo test bench ui live screenshots backfill lint clean \
	spark-up spark-down serve-features serve-model mlflow-ui cluster cluster-demo \
	image compose-demo compose-up

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Local-mode Spark steps map Spark's classes from an archive written once per install
# (shopsmart-spark-archive, about 30 s): a JVM of their own starts seconds sooner.
$(VENV)/.spark-archive: $(VENV)/.installed
	@scripts/ensure-java.sh
	$(BIN)/shopsmart-spark-archive || echo "no class archive: local-mode Spark steps start without one"
	touch $@

install: $(VENV)/.installed $(VENV)/.spark-archive

java:
	@scripts/ensure-java.sh

# Debian's chromium, driven headless by Playwright for the browser tests and screenshots.
chromium:
	@scripts/ensure-chromium.sh >/dev/null

demo: install java
	BIN=$(BIN) scripts/demo.sh

# Four workers (pytest-xdist), one test module per worker at a time, the longest modules first
# (ordering.py): the fourth fills the cores while the others wait on Dagster's daemons and
# services (docs/performance.md). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 4
test: install java chromium
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The platform against its baselines (plain PySpark, DuckDB), as ratios measured in one run,
# against targets (docs/performance.md): BENCH_ORDERS_PER_DAY=1000000 by default, BENCH_SCALE=1
# for the 10k/100k/1M scaling table; results in bench-results/, exit 1 on a missed target.
bench: install java
	$(BIN)/python scripts/bench.py

# The Dagster UI and daemon on http://$(HOST):$${PORT:-3000}; Ctrl-C (or SIGTERM to make) stops
# the whole process tree. LIVE=1 (or make live): schedules and sensors on, and the source
# simulator writing new orders as time passes, so that the demo runs itself.
# SPARK=local: a JVM per Spark step instead of the warm Spark Connect server started beside
# the daemon (docs/performance.md).
LIVE ?=
SPARK ?= connect
ui: install java
	exec $(BIN)/shopsmart-ui --host $(HOST) --port $${PORT:-3000} --spark $(SPARK) \
	  $(if $(LIVE),--live --orders-per-day $${DEMO_ORDERS_PER_DAY:-500})

live:
	$(MAKE) ui LIVE=1

# The platform on Celery worker pools (docs/deployment.md): a Redis broker, Dagster's instance
# on PostgreSQL, a `spark` pool (Spark steps, one at a time) and a `default` pool (the rest),
# each its own process group, services' files in .cluster/. `make cluster`: the UI and daemon
# on them until Ctrl-C; `make cluster-demo` (after make demo): the demo's days run once on the
# workers, where each step ran, the reconciliation, then everything stopped.
cluster: install java
	exec $(BIN)/python scripts/shopsmart_cluster.py up --host $(HOST) --port $${PORT:-3000} --spark $(SPARK)

cluster-demo: install java
	$(BIN)/python scripts/shopsmart_cluster.py demo --days $${DEMO_DAYS:-14} --end-date $${DEMO_END:-yesterday}

# The platform as containers (docs/deployment.md): one image for every Dagster service, a compose
# deployment of it (deploy/compose.yaml) on PostgreSQL, Redis, the two worker pools and Spark
# Connect. Podman from Debian's packages (installed when missing), or
# SHOPSMART_CONTAINER_ENGINE=docker. `make compose-demo`: the demo's days run through the
# deployment's UI API, where each step ran, the reconciliation, then everything removed;
# `make compose-up`: the deployment with the UI on 127.0.0.1:$${PORT:-3000} until Ctrl-C.
image: $(VENV)/.installed
	VENV_PYTHON=$(abspath $(BIN))/python deploy/build-image.sh

compose-demo: image
	$(BIN)/python deploy/compose_demo.py demo --days $${DEMO_DAYS:-14} \
	  --orders-per-day $${DEMO_ORDERS_PER_DAY:-500} --end-date $${DEMO_END:-yesterday}

compose-up: image
	exec $(BIN)/python deploy/compose_demo.py up --port $${PORT:-3000}

# docs/images/*.png from the UI after make demo (headless Chromium).
screenshots: install chromium
	$(BIN)/python scripts/screenshots.py --out docs/images

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
	$(BIN)/ruff check shopsmart_assets shopsmart_assets_tests scripts deploy
	$(BIN)/ruff format --check shopsmart_assets shopsmart_assets_tests scripts deploy

clean:
	rm -rf $(SHOPSMART_DATA_DIR) $(DAGSTER_HOME) spark-warehouse metastore_db
