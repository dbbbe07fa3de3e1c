"""The pytest plugin: options, markers, parametrization from the registry, and the session
fixture. Only wiring: the work happens in quantgate.session and the modules it uses."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _pytest import junitxml

from quantgate import llama_placement, progress
from quantgate.configuration.registry import ModelEntry, Pair, Registry
from quantgate.configuration.thresholds import Thresholds
from quantgate.configuration.validation import (
    Configuration,
    check_selected_benchmarks,
    load_configuration,
)
from quantgate.errors import QuantgateError
from quantgate.night.machine import describe, machine_record
from quantgate.night.shard_selection import ShardSelector, model_of, unit_of
from quantgate.night.shards import (
    load_timings,
    parse_shard,
    plan_table,
)
from quantgate.plugin_options import add_options
from quantgate.quiet import MachineLock
from quantgate.report.changes import load_previous
from quantgate.report.collector import SummaryCollector
from quantgate.session import GateSession

_CONFIGURATION = pytest.StashKey[Configuration]()
#: --shard-timings: an earlier summary's wall seconds per pair (empty without one)
_TIMINGS = pytest.StashKey[dict[str, float]]()
_REGISTRY = pytest.StashKey[Registry]()
_THRESHOLDS = pytest.StashKey[Thresholds]()
#: where this run's verdicts are made (quantgate.night.machine), on the controller
_MACHINE = pytest.StashKey[dict]()


def _names(value: str) -> list[str]:
    return [v for v in (s.strip() for s in value.split(",")) if v]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def _rooted(config: pytest.Config, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else Path(config.rootpath) / p


def _own_gpus(config: pytest.Config) -> None:
    """Under pytest-xdist each worker owns its GPUs: CUDA_VISIBLE_DEVICES is set from the
    worker id here, before any test imports torch, vLLM or llama.cpp (they read it once)."""
    from quantgate.night import hardware

    worker = config.workerinput["workerid"]  # type: ignore[attr-defined]
    workers = int(config.workerinput.get("workercount", 1))  # type: ignore[attr-defined]
    ids = hardware.gpu_ids()
    if not ids:
        return
    mine = hardware.worker_gpus(int(worker.removeprefix("gw")), workers, ids)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(mine)
    if len(ids) < workers:
        progress._stderr(
            f"[quantgate] {worker}: {workers} workers share {len(ids)} GPU(s): GPU "
            f"{mine[0]} is not its own (use -n {len(ids)} for one GPU per worker)"
        )


def _open_store(config: pytest.Config) -> None:
    """--store sets QUANTGATE_STORE for this process and every child (xdist workers, the
    quantizer jobs); an unwritable store is one usage error before any test."""
    from quantgate.artifacts.shared_store import STORE_ENV, shared_store

    if url := config.getoption("store"):
        os.environ[STORE_ENV] = url
    try:
        store = shared_store()
        if store is not None and not hasattr(config, "workerinput"):
            store.check()
    except QuantgateError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tryfirst: junitxml, pytest-html and pytest-benchmark read these options in their own
    # pytest_configure, so the defaults must be set before they run.
    if hasattr(config, "workerinput"):
        _own_gpus(config)
    reports = _rooted(config, config.getoption("reports_dir"))
    if not hasattr(config, "workerinput"):
        try:
            reports.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise pytest.UsageError(
                f"--reports-dir {reports}: not writable ({exc.strerror})"
            ) from None
    if config.option.xmlpath is None:
        config.option.xmlpath = str(reports / "junit.xml")
    if getattr(config.option, "htmlpath", "missing") is None:
        config.option.htmlpath = str(reports / "report.html")
        config.option.self_contained_html = True
    if getattr(config.option, "benchmark_json", "missing") is None:
        config.option.benchmark_json = str(reports / "benchmark.json")

    if config.getoption("limit") and config.getoption("baseline") == "pinned":
        # a published score is the full set's: against N items it would judge the sample
        raise pytest.UsageError(
            "--limit with --baseline pinned: a pinned score is the whole task's, not its first "
            "items'; use --baseline live (the baseline model on the same items)"
        )
    try:
        # every problem of the registry, selection, thresholds and local tasks, in one error
        checked = load_configuration(
            _rooted(config, config.getoption("registry")),
            _rooted(config, config.getoption("thresholds")),
            _flat(config, "model"),
            _flat(config, "compression"),
            Path(config.rootpath),
            config.getoption("limit"),
        )
    except QuantgateError as exc:
        raise pytest.UsageError(str(exc)) from None
    registry = checked.registry
    config.stash[_CONFIGURATION] = checked
    config.stash[_REGISTRY] = registry
    config.stash[_THRESHOLDS] = checked.thresholds
    if not hasattr(config, "workerinput"):
        compare = config.getoption("compare")
        try:
            previous = load_previous(_rooted(config, compare)) if compare else None
        except QuantgateError as exc:
            raise pytest.UsageError(str(exc)) from None
        machine = machine_record(config.getoption("threads"), llama_placement.machine_facts())
        config.stash[_MACHINE] = machine
        diagnose = _diagnoser(config, checked, reports) if config.getoption("diagnose") else None
        config.pluginmanager.register(
            SummaryCollector(reports, registry.data.report.q_score, previous, machine, diagnose),
            "quantgate-summary",
        )
    for mark, description in registry.marks.items():
        config.addinivalue_line("markers", f"{mark}: {description}")
    _open_store(config)
    timings_path, shard = config.getoption("shard_timings"), config.getoption("shard")
    try:  # read once: --shard and --quantgate-plan both balance by it
        config.stash[_TIMINGS] = load_timings(_rooted(config, timings_path)) if timings_path else {}
        if shard:
            k, n = parse_shard(shard)
            selector = ShardSelector(k, n, config.stash[_TIMINGS], reports)
            config.pluginmanager.register(selector, "quantgate-shard")
    except QuantgateError as exc:
        raise pytest.UsageError(str(exc)) from None

    capman = config.pluginmanager.getplugin("capturemanager")

    def to_terminal(line: str) -> None:
        # the terminal reporter is registered after this hook runs: look it up per line
        reporter = config.pluginmanager.getplugin("terminalreporter")
        if capman is None or reporter is None or hasattr(config, "workerinput"):
            progress._stderr(line)
            return
        with capman.global_and_fixture_disabled():
            reporter.write_line(line)

    progress.sink = to_terminal


def _diagnoser(
    config: pytest.Config, checked: Configuration, reports: Path
) -> Callable[[list[dict]], list]:
    """What --diagnose runs once the rows are in: quantgate.diagnose for each failed pair."""

    def run(rows: list[dict]) -> list:
        from quantgate.diagnose import diagnose_failed

        return diagnose_failed(
            checked,
            rows,
            config.getoption("diagnose"),
            config.getoption("threads"),
            reports / "diagnosis",
        )

    return run


def _flat(config: pytest.Config, option: str) -> list[str]:
    return [n for v in config.getoption(option) for n in _names(v)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config = metafunc.config
    if "model_key" in metafunc.fixturenames:  # once per selected model: noise floor, baselines
        registry = config.stash[_REGISTRY]
        # the noise floor runs in the tiers its entry names; the baselines test in none (a
        # night's first stage selects it by path)
        floor = metafunc.definition.get_closest_marker("noise_floor") is not None
        selected = _flat(config, "model")
        registry.pairs(selected)  # an unknown --model is an error here too
        models = sorted(
            {p.model_key for p in registry.pairs(selected)}, key=list(registry.models).index
        )
        metafunc.parametrize(
            "model_key",
            [
                pytest.param(
                    m,
                    id=m,
                    marks=[
                        getattr(pytest.mark, k)
                        for k in (registry.models[m].noise_floor_marks if floor else [])
                    ],
                )
                for m in models
            ],
            scope="session",
        )
        return
    if "pair" not in metafunc.fixturenames:
        return
    pairs = config.stash[_REGISTRY].pairs(_flat(config, "model"), _flat(config, "compression"))

    def marks(p: Pair) -> list[pytest.MarkDecorator]:
        return [getattr(pytest.mark, m) for m in p.marks]

    if "bench" in metafunc.fixturenames:  # one test per (pair, benchmark)
        metafunc.parametrize(
            ("pair", "bench"),
            [
                pytest.param(p, b, id=f"{p.id}-{b}", marks=marks(p))
                for p in pairs
                for b in p.model.benchmarks
            ],
            scope="session",
        )
        return
    metafunc.parametrize(
        "pair", [pytest.param(p, id=p.id, marks=marks(p)) for p in pairs], scope="session"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Canaries: tests of a gate listed in the entry's expect_fail_on become strict xfails that
    only a GateFailure satisfies (a crash, a missing file or NaN still fails the run). Under
    ``--limit`` a canary's retention tests are not strict: the first N items are a quick tier's
    sample, too small to catch every canary (smollm2-Q2_K's hellaswag was not caught on 10), and
    a quick tier that turns red for that would cry wolf; its XPASS is reported."""
    from quantgate.errors import GateFailure

    _check_hardware(config, items)
    limit = config.getoption("limit")
    for item in items:
        pair = getattr(item, "callspec", None) and item.callspec.params.get("pair")
        gate_mark = item.get_closest_marker("quality_gate")
        # an empty parametrization (no pair has benchmarks) gives pytest's NOTSET placeholder
        if not isinstance(pair, Pair) or gate_mark is None:
            continue
        gate = gate_mark.args[0]
        if gate in pair.compression.skip:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"models.{pair.model_key}.compressions.{pair.compression_name} has "
                    f"skip: [{gate}] in the registry"
                )
            )
            continue
        bench = item.callspec.params.get("bench", "overall" if gate == "retention" else None)
        if pair.is_canary_for(gate, bench):
            sampled = gate == "retention" and limit is not None
            reason = f"canary: {pair.id} is declared expect: fail on the {gate} gate"
            if sampled:
                reason += f" (not strict under --limit {limit}: a sample may not catch it)"
            mark = pytest.mark.xfail(strict=not sampled, raises=GateFailure, reason=reason)
            item.add_marker(mark)
    items[:] = _one_engine_pair_at_a_time(items)
    if hasattr(config, "workerinput"):
        items[:] = sorted(items, key=_is_timed)  # stable: the rest keep their order


def _one_engine_pair_at_a_time(items: list[pytest.Item]) -> list[pytest.Item]:
    """The tests of a pair whose backend holds one model per process (vLLM) run together,
    where its first test stood. pytest orders the session-scoped pairs by the other
    parameters too (measured: W8A8's throughput after the pruned pair's tests), and each move
    from one such pair to another is an engine start (a minute or more on a CPU). Other
    pairs keep pytest's order. The catalogue answers without importing any backend."""
    from quantgate.configuration.backend_settings import CATALOGUE

    slots: list[pytest.Item | list[pytest.Item]] = []
    grouped: dict[str, list[pytest.Item]] = {}
    for item in items:
        pair = getattr(item, "callspec", None) and item.callspec.params.get("pair")
        if not isinstance(pair, Pair) or not CATALOGUE[pair.model.backend].one_per_process:
            slots.append(item)
        elif pair.id in grouped:
            grouped[pair.id].append(item)
        else:
            grouped[pair.id] = [item]
            slots.append(grouped[pair.id])
    return [i for slot in slots for i in (slot if isinstance(slot, list) else [slot])]


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """--dist loadgroup: one model's tests on one worker (quantgate.night.xdist_groups)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from quantgate.night.xdist_groups import ModelGroupScheduling

    return ModelGroupScheduling(config, log, config.stash[_REGISTRY].models)


def _is_timed(item: pytest.Item) -> bool:
    """A throughput test: it runs alone (pytest_runtest_call). Under pytest-xdist these go
    last, so a worker waiting for its turn to time never idles beside untimed work that is
    still to do (seen: 146 s of a 470 s cold ``-n 2`` run spent waiting behind the noise
    floor)."""
    gate = item.get_closest_marker("quality_gate")
    return gate is not None and gate.args[0] == "throughput"


_WORKER_PROBLEMS = "quantgate_usage_error"
#: on the controller: the usage error a worker handed over (printed at the session's end)
_USAGE_ERRORS = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """The benchmarks of the tests that will run (after -m, -k and deselection): upstream
    tasks and metrics exist, and --baseline pinned has their scores. Skipped under
    --collect-only, which runs nothing (lm-eval's task index costs about 9 s).

    A pytest-xdist worker cannot end the run with a usage error (the controller reads it as
    a crash): it runs nothing and hands the message to the controller, which prints it and
    exits 4 (tryfirst: before xdist sends the controller the collected ids)."""
    config = session.config
    plan = config.getoption("quantgate_plan")
    if plan is not None:
        _print_plan(session, plan)
    _start_children_early(session)
    try:
        _check_selected(session)
    except QuantgateError as exc:
        if not hasattr(config, "workerinput"):
            raise pytest.UsageError(str(exc)) from None
        config.workeroutput[_WORKER_PROBLEMS] = str(exc)  # type: ignore[attr-defined]
        session.items.clear()


def _start_children_early(session: pytest.Session) -> None:
    """Where a selected test will load a model in a child process (llama.cpp's), its
    forkserver starts now, so its imports overlap what comes before the first load."""
    config = session.config
    if config.getoption("collectonly") or config.getoption("in_process"):
        return
    from quantgate.backends.child import start_forkserver
    from quantgate.configuration.backend_settings import CATALOGUE

    models = _selected_models(config, session.items)
    if any(CATALOGUE[m.backend].runs_in_child for m in models.values()):
        start_forkserver()


def pytest_testnodedown(node: object, error: object) -> None:
    """Controller side of a worker's usage error (pytest_collection_finish)."""
    message = getattr(node, "workeroutput", {}).get(_WORKER_PROBLEMS)
    config = getattr(node, "config", None)
    if message and config is not None:
        config.stash[_USAGE_ERRORS] = message


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if message := session.config.stash.get(_USAGE_ERRORS, None):
        reporter = session.config.pluginmanager.getplugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"ERROR: {message}", red=True)
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def _check_selected(session: pytest.Session) -> None:
    config = session.config
    if config.getoption("collectonly"):
        return
    registry = config.stash[_REGISTRY]
    selected: set[tuple[str, str]] = set()
    for item in session.items:
        params = getattr(item, "callspec", None) and item.callspec.params
        key = model_of(item)
        if not params or key not in registry.models or item.get_closest_marker("skip"):
            continue
        bench = params.get("bench")
        gate = item.get_closest_marker("quality_gate")
        if isinstance(bench, str):
            selected.add((key, bench))
        elif "model_key" in params or (gate is not None and gate.args[0] == "retention"):
            selected |= {(key, b) for b in registry.models[key].benchmarks}
    check_selected_benchmarks(config.stash[_CONFIGURATION], selected, config.getoption("baseline"))


def _print_plan(session: pytest.Session, budget_text: str) -> None:
    config = session.config
    try:
        budget = float(budget_text) if budget_text else None
    except ValueError:
        raise pytest.UsageError(f"--quantgate-plan {budget_text!r}: expected seconds") from None
    units = {u for u in map(unit_of, session.items) if u is not None}
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(plan_table(units, config.stash[_TIMINGS], budget))


def _selected_models(config: pytest.Config, items: list[pytest.Item]) -> dict[str, ModelEntry]:
    """The registry entries of the models the collected tests run, by key."""
    registry = config.stash[_REGISTRY]
    return {k: registry.models[k] for k in map(model_of, items) if k in registry.models}


def _check_hardware(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before anything downloads or loads: entries needing more GPUs than are present are
    skipped with needed/found; llama.cpp offload asked of a build without it is a usage error."""
    from quantgate.night import hardware

    models = _selected_models(config, items)
    for item in items:
        if reason := hardware.vllm_cpu_skip_reason(model_of(item) or "", models):
            item.add_marker(pytest.mark.skip(reason=reason))
    if not any(hardware.gpus_needed(m) for m in models.values()):
        return
    present = hardware.gpus_present()
    skips = {k: hardware.gpu_skip_reason(k, m, present) for k, m in models.items()}
    for item in items:
        if reason := skips.get(model_of(item) or ""):
            item.add_marker(pytest.mark.skip(reason=reason))
    offloading = sorted(
        k
        for k, m in models.items()
        if m.backend == "llama_cpp" and m.backend_settings.n_gpu_layers != 0 and not skips[k]
    )
    if problem := hardware.llama_cpp_offload_problem(offloading):
        raise pytest.UsageError(problem)


_LOCK = pytest.StashKey[MachineLock]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Under pytest-xdist, timed tests run alone (quantgate.quiet): each test's call phase
    holds the machine lock shared, a throughput test holds it exclusive."""
    config = item.config
    if not hasattr(config, "workerinput"):
        yield
        return
    if _LOCK not in config.stash:
        config.stash[_LOCK] = MachineLock()
    lock = config.stash[_LOCK]
    with lock.exclusive() if _is_timed(item) else lock.shared():
        yield


@pytest.fixture(scope="session")
def quantgate(pytestconfig: pytest.Config) -> Iterator[GateSession]:
    """The session's GateSession: artifacts, loaded backends, thresholds, verdicts."""
    registry = pytestconfig.stash[_REGISTRY]
    session = GateSession(
        registry,
        pytestconfig.stash[_THRESHOLDS],
        n_threads=pytestconfig.getoption("threads"),
        root=Path(pytestconfig.rootpath),
        reports_dir=_rooted(pytestconfig, pytestconfig.getoption("reports_dir")),
        baseline_mode=pytestconfig.getoption("baseline"),
        underpowered=pytestconfig.getoption("underpowered"),
        tasks=pytestconfig.stash[_CONFIGURATION].tasks,
        in_child=not pytestconfig.getoption("in_process"),
    )
    yield session
    session.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    registry = config.stash.get(_REGISTRY, None)
    if registry is None:
        return []
    cache = os.environ.get("QUANTGATE_CACHE", "~/.cache/quantgate")
    store = os.environ.get("QUANTGATE_STORE")
    behind = f", store {store}" if store else ""
    lines = [
        f"quantgate: registry {registry.path} ({len(registry.models)} models), cache {cache}"
        + behind
    ]
    if (machine := config.stash.get(_MACHINE, None)) is not None:
        lines.append(f"quantgate: machine: {describe(machine)}")
    return lines


def pytest_sessionstart(session: pytest.Session) -> None:
    """The machine in JUnit, as testsuite properties (each shard's junit.xml keeps its own,
    and the merge keeps every shard's testsuite)."""
    machine = session.config.stash.get(_MACHINE, None)
    xml = session.config.stash.get(junitxml.xml_key, None)
    if machine is None or xml is None:
        return
    for key, value in machine.items():
        text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
        xml.add_global_property(f"quantgate_machine.{key}", text)
