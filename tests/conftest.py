"""Shared pytest configuration."""

import os
import urllib.request

import pytest
import torch


def pytest_configure(config):
    # The tests use tiny tensors, for which intra-op parallelism only adds overhead; on a loaded
    # 2-core machine the spinning worker threads made the suite ~3x slower. Respect an explicit
    # OMP_NUM_THREADS.
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No test may download: opening a URL fails (tests that simulate a server patch it)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to open a URL")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
