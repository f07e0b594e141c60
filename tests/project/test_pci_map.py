"""The PCI DSS control map (docs/pci-dss.md) and its check (tests/pci_map.py): the map lists what issue 17 names, and
the check finds a requirement no test proves."""

from types import SimpleNamespace

from tests.pci_map import ControlMap, map_requirements

NAMED_BY_THE_ISSUE = {
    "3.2.1",
    "3.3.1",
    "3.3.2",
    "3.4.1",
    "3.5.1",
    "3.5.1.1",
    "3.6.1",
    "4.2.1",
    "6.2.4",
    "8.2.8",
    "8.3.4",
    "8.3.6",
    "8.4.2",
    "10.2.2",
    "10.5.1",
}


def control_map(*, required, collected, selected, passed) -> ControlMap:
    checked = ControlMap(SimpleNamespace(option=SimpleNamespace(keyword="", collectonly=False), args=[]))
    checked.required, checked.collected, checked.selected, checked.passed = required, collected, selected, passed
    return checked


def test_the_map_lists_every_requirement_the_issue_names_and_the_3_7_and_7_2_and_10_2_1_and_10_3_families():
    listed = map_requirements()
    assert listed >= NAMED_BY_THE_ISSUE
    for family in ("3.6.", "3.7.", "7.2.", "10.2.1.", "10.3."):
        assert any(requirement.startswith(family) or requirement == family[:-1] for requirement in listed), family


def test_a_requirement_with_no_test_or_no_passing_test_is_reported_and_one_run_elsewhere_is_not():
    checked = control_map(
        required={"3.4.1", "8.3.4", "10.5.1", "8.4.2"},
        collected={"3.4.1": {"a"}, "8.3.4": {"b"}, "8.4.2": {"c"}},
        selected={"3.4.1": {"a"}, "8.3.4": {"b"}},  # 8.4.2's test runs in the other pass
        passed={"a"},
    )

    assert checked.problems() == [
        "8.3.4: none of its 1 test(s) passed",
        "10.5.1: no test is marked pci('10.5.1')",
    ]
