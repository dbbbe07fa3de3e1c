"""All cores means the cores this process may run on: a container's cpuset or a `taskset`
(make test pins its untimed model tests to one core) gives one thread per allowed core, not
os.cpu_count()'s, which would spin threads against each other."""

from __future__ import annotations

import os

from quantgate.night.machine import available_cores


def test_the_affinity_sets_the_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1}, raising=False)
    assert available_cores() == 1


def test_without_an_affinity_call_it_is_the_cpu_count(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert available_cores() == 6
