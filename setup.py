"""Packaging lives in pyproject.toml; this shim keeps `pip install -e .` working on old tooling."""

from setuptools import setup

setup()
