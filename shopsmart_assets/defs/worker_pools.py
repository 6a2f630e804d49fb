"""Where steps run: Spark steps on larger workers in the `spark` pool, the rest on standard
workers. The tags are read by dagster-k8s (k8s_job_executor / K8sRunLauncher) as pod resource
requests and ignored by the local executors; the pool limit lives in dagster.yaml."""

from __future__ import annotations

from typing import Any

SPARK_POOL = "spark"


def k8s_resources(cpu: str, memory: str) -> dict[str, Any]:
    """The `dagster-k8s/config` tag asking for a pod of this size."""
    return {
        "dagster-k8s/config": {
            "container_config": {
                "resources": {
                    "requests": {"cpu": cpu, "memory": memory},
                    "limits": {"memory": memory},
                }
            }
        }
    }


SPARK_WORKER_TAGS = {**k8s_resources(cpu="4", memory="16Gi"), "shopsmart/worker": "spark"}
STANDARD_WORKER_TAGS = {**k8s_resources(cpu="500m", memory="1Gi"), "shopsmart/worker": "standard"}

# Keyword arguments for @asset / @multi_asset.
SPARK_STEP: dict[str, Any] = {"pool": SPARK_POOL, "op_tags": SPARK_WORKER_TAGS}
STANDARD_STEP: dict[str, Any] = {"op_tags": STANDARD_WORKER_TAGS}
