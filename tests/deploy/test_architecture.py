"""What docs/architecture.md says of the code holds: the import rules of its table, and every step of its two
request-path pictures names a definition that exists (dev/architecture_pictures.py draws them)."""
from __future__ import annotations

import pytest

from dev import architecture_pictures as pictures

DEPLOYABLES = ("services/inference", "services/explain/api", "services/explain/worker", "services/bot",
               "services/web", "services/pacs")


@pytest.fixture(scope="module")
def edges():
    return pictures.import_edges()


def test_the_core_never_imports_a_service(edges):
    assert [(a, b) for (a, b) in edges if a.startswith("diseaseid") and b.startswith("services")] == []


def test_deployables_never_import_each_other(edges):
    assert [(a, b) for (a, b) in edges if a in DEPLOYABLES and b in DEPLOYABLES] == []
    # The explain API and its worker share services/explain/*.py, which imports neither of them.
    assert [b for (a, b) in edges if a == "services/explain" and b in DEPLOYABLES] == []


def test_services_common_imports_no_service_but_the_worker_probe():
    """The one exception, in docs/architecture.md's table: the container health check's --explain-worker
    probe (a lazy import, read too) asks services.explain.liveness."""
    modules = pictures.source_files()
    reach = {rel: {t for t in pictures.imported_files(rel, modules)
                   if t.startswith("services/") and not t.startswith("services/common/")}
             for rel in modules.values() if rel.startswith("services/common/")}
    assert {rel: targets for rel, targets in reach.items() if targets} == {
        "services/common/healthcheck.py": {"services/explain/liveness.py"}}


def test_type_checking_imports_are_not_arrows(tmp_path, monkeypatch):
    (tmp_path / "diseaseid").mkdir()
    (tmp_path / "diseaseid" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from diseaseid import b\n"
        "def f():\n    from diseaseid import c\n")
    for name in ("b", "c"):
        (tmp_path / "diseaseid" / f"{name}.py").write_text("")
    monkeypatch.setattr(pictures, "ROOT", tmp_path)
    modules = pictures.source_files()
    assert pictures.imported_files("diseaseid/a.py", modules) == {"diseaseid/c.py"}


@pytest.mark.parametrize("key", sorted(pictures.PATHS))
def test_every_step_of_a_request_path_is_found_where_it_says(key):
    placed = pictures.resolved(pictures.PATHS[key][1])
    for step, rel, lane in placed:
        if step.lane in pictures.OUTSIDE:
            continue
        assert rel.startswith(step.lane + "/") and step.name in pictures.definitions(rel)
        assert lane == pictures.box_of(rel)
    assert placed[0][2] == "client" and placed[-1][2] == "client"


def test_a_step_whose_definition_is_gone_stops_the_drawing():
    gone = pictures.Step("services/inference", "predict_gone", "nothing")
    with pytest.raises(SystemExit, match="predict_gone"):
        pictures.resolved([gone])
