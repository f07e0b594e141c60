"""The PCI DSS control map (docs/pci-dss.md) held against the tests that prove it.

A test proving a requirement is marked ``@pytest.mark.pci("3.4.1")`` (several marks for several requirements). The
map's requirements are the first column of its tables. Then:

- a marked test naming a requirement the map does not list stops the run at collection (a typo, or a map that
  forgot a control);
- in a run of the whole suite (no file, ``-k`` or node id chosen), a requirement of the map with no marked test at
  all, or whose marked tests ran and none passed, fails the run, named in the summary. Tests another pass runs (the
  PostgreSQL-only ones, deselected on SQLite) count for their requirement in that pass.

Under pytest-xdist the tests are collected by the workers, each running a share of them: each worker hands what it
collected to the controller (``workeroutput``), which hears every test's report and judges the whole run.
"""

import re
from pathlib import Path

import pytest

MAP = Path(__file__).resolve().parent.parent / "docs" / "pci-dss.md"
REQUIREMENT_ROW = re.compile(r"^\|\s*(\d+(?:\.\d+)+)\s*\|", re.MULTILINE)


def map_requirements() -> set[str]:
    return set(REQUIREMENT_ROW.findall(MAP.read_text()))


def requirements_of(item) -> set[str]:
    return {str(requirement) for mark in item.iter_markers("pci") for requirement in mark.args}


class ControlMap:
    def __init__(self, config):
        self.config = config
        self.required = map_requirements()
        self.collected: dict[str, set[str]] = {}  # requirement → node ids, deselected ones included
        self.selected: dict[str, set[str]] = {}
        self.passed: set[str] = set()

    def whole_suite(self) -> bool:
        option = self.config.option
        chosen = [Path(arg.split("::")[0]).resolve() for arg in self.config.args]
        tests = Path(__file__).resolve().parent
        return not option.keyword and not getattr(option, "lf", False) and all(path == tests for path in chosen)

    @pytest.hookimpl(tryfirst=True)  # before -m and -k deselect: their tests count for the static check
    def pytest_collection_modifyitems(self, items):
        unknown = {}
        for item in items:
            for requirement in requirements_of(item):
                self.collected.setdefault(requirement, set()).add(item.nodeid)
                if requirement not in self.required:
                    unknown.setdefault(requirement, []).append(item.nodeid)
        if unknown:
            named = "; ".join(f"{r} ({', '.join(ids[:3])})" for r, ids in sorted(unknown.items()))
            raise pytest.UsageError(f"pci marks name requirements docs/pci-dss.md does not list: {named}")

    def pytest_collection_finish(self, session):
        for item in session.items:
            for requirement in requirements_of(item):
                self.selected.setdefault(requirement, set()).add(item.nodeid)

    def pytest_runtest_logreport(self, report):
        if report.when == "call" and report.passed:
            self.passed.add(report.nodeid)

    def problems(self) -> list[str]:
        found = []
        for requirement in sorted(self.required, key=lambda r: [int(p) for p in r.split(".")]):
            if not self.collected.get(requirement):
                found.append(f"{requirement}: no test is marked pci({requirement!r})")
            elif self.selected.get(requirement) and not self.selected[requirement] & self.passed:
                found.append(f"{requirement}: none of its {len(self.selected[requirement])} test(s) passed")
        return found

    def pytest_testnodedown(self, node, error):
        """(pytest-xdist's controller) a worker is done: what it collected and selected."""
        output = getattr(node, "workeroutput", {})
        for mine, theirs in (
            (self.collected, output.get("pci_collected", {})),
            (self.selected, output.get("pci_selected", {})),
        ):
            for requirement, node_ids in theirs.items():
                mine.setdefault(requirement, set()).update(node_ids)

    def pytest_sessionfinish(self, session):
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:  # a pytest-xdist worker: the controller judges
            workeroutput["pci_collected"] = {requirement: sorted(ids) for requirement, ids in self.collected.items()}
            workeroutput["pci_selected"] = {requirement: sorted(ids) for requirement, ids in self.selected.items()}
            return
        if self.config.option.collectonly or not self.whole_suite() or session.exitstatus not in (0, 1):
            return
        self.reported = self.problems()
        if self.reported:
            session.exitstatus = 1

    def pytest_terminal_summary(self, terminalreporter):
        reported = getattr(self, "reported", [])
        if reported:
            terminalreporter.section("PCI DSS control map (docs/pci-dss.md)", red=True)
            for line in reported:
                terminalreporter.line(line)


def pytest_configure(config):
    config.pluginmanager.register(ControlMap(config), "pci-control-map")
