"""The Spark Connect server of `scripts/spark.sh connect-up`: a long-running Spark application
whose driver serves Spark Connect through Spark's own plugin (`spark.plugins=
org.apache.spark.sql.connect.SparkConnectPlugin`, given by spark.sh with the other settings).

Why not Spark's `SparkConnectServer` main class: it forces per-session artifact isolation, so
every Connect session (every Dagster step) runs its queries under a class loader of its own;
Spark's cache of generated code is keyed by class loader, so each step compiled all of its
queries again and the JVM JIT-compiled the new classes again: seconds of CPU per step on a
server that is meant to be warm (docs/performance.md). This server runs with
`spark.sql.artifact.isolation.enabled=false`: sessions stay separate (their own SQL settings,
views and caches) and share the compiled code. It accepts no uploaded classes or jars of its
own choosing for anyone but the platform's steps: it listens on 127.0.0.1.

spark-submit runs this file; its JVM is the server process (pid file, logs and stop in
spark.sh) and this Python process its child, which ends when the JVM does.
"""

import sys

from pyspark.sql import SparkSession


def main() -> None:
    # Creating the session starts the SparkContext, and with it the Connect plugin's gRPC
    # service on spark.connect.grpc.binding.address:port.
    SparkSession.builder.getOrCreate()
    print("Spark Connect plugin started", flush=True)
    # spark-submit's JVM holds this process's stdin: end of input is the JVM going away.
    sys.stdin.read()


if __name__ == "__main__":
    main()
