"""The serving goals as numbers in one bench run (bench.goals), the /predict suite's ratios (bench.predict._goals),
and the benchmark table generated from a run's JSON (scripts/bench_table.py): values, refusals, and that only
the marked block of its file changes."""
from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

from bench.goals import SERVING_GOALS, describe, goal, summary
from bench.predict import _goals
from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("bench_table", REPO / "scripts" / "bench_table.py")
bench_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_table)


def test_a_goal_is_its_value_against_its_target():
    assert goal(0.49, "<=", 0.5)["pass"] and not goal(0.51, "<=", 0.5)["pass"]
    assert goal(0.8, ">=", 0.8)["pass"] and not goal(0.79, ">=", 0.8)["pass"]
    assert goal(0, "==", 0, "errors")["pass"] and not goal(1, "==", 0, "errors")["pass"]
    assert not goal(None, "<=", 0.5)["pass"]  # not measured never passes
    assert not goal(1.0, "<=", 2.0, condition=False)["pass"]  # e.g. the explain workers were not all busy
    with pytest.raises(KeyError):
        goal(1.0, "<=", 2.0, serving="no such goal")
    assert describe("predict/study", goal(1.6, "<=", 0.5, detail="x")) == \
        "FAIL  predict/study: 1.600x (goal <= 0.500x)  [x]"
    assert describe("explain/render", goal(0.125, "<=", 0.2, "share")).startswith("PASS  explain/render: 12.5% ")
    assert describe("old", True) == "PASS  old"


def test_the_summary_lists_every_goal_and_what_was_not_measured():
    report = {"suites": {
        "predict": {"goals": {"study": goal(0.4, "<=", 0.5, serving="study"),
                              "p99": goal(3.0, "<=", 2.0, serving="busy"), "first goal": False}},
        "explain": {"error": "RuntimeError: no redis"}}}
    lines = summary(report)
    assert "PASS  predict/study: 0.400x (goal <= 0.500x)" in lines
    assert "FAIL  predict/p99: 3.000x (goal <= 2.000x)" in lines
    assert "FAIL  predict/first goal" in lines
    assert "FAIL  explain: the suite failed (RuntimeError: no redis)" in lines
    missing = [line for line in lines if line.startswith("----")]
    assert len(missing) == len(SERVING_GOALS) - 2  # study and busy were measured
    assert lines[-1] == f"1 passed, 3 failed, {len(SERVING_GOALS) - 2} of the serving goals not measured"


def test_predict_goals_are_the_issues_ratios():
    rows = [{"model": m, "clients": c, "p50_ms": p50, "p99_ms": p99, "throughput_rps": rps, "errors": 0}
            for m, c, p50, p99, rps in (("student", 1, 12.0, 15.0, 80.0), ("student", 16, 60.0, 100.0, 150.0),
                                        ("teacher", 1, 30.0, 40.0, 33.0), ("teacher", 16, 90.0, 200.0, 60.0))]
    # one thread per pass (the requests/s formula's per-core time) / as a lone request runs it (the p50's)
    in_process = {"student": {"per_core": 10.5, "lone": 8.0}, "teacher": {"per_core": 29.0, "lone": 20.0}}
    study = {"ratio": 0.45, "study_ms_p50": 450.0, "slices_one_by_one_ms_p50": 1000.0, "compared_with": "32 x"}
    loaded = {"p99_ms": 250.0, "busy_share": 1.0, "busy_samples": 40, "explain_workers": 1, "errors": 0}
    g = _goals(rows, in_process, study, loaded)
    cores = os.cpu_count()
    assert g["student/p50_at_1_minus_predict"]["value"] == pytest.approx(4.0)  # 12 - the lone 8
    assert not g["student/p50_at_1_minus_predict"]["pass"]
    assert g["teacher/p50_at_1_minus_predict"]["value"] == pytest.approx(10.0)
    assert g["student/rps_at_16_over_cores_x_1000_over_predict"]["value"] == pytest.approx(
        150.0 / (cores * 1000 / 10.5), abs=1e-4)
    assert g["study_over_its_slices_one_by_one"]["value"] == 0.45 and g["study_over_its_slices_one_by_one"]["pass"]
    assert g["p99_with_explain_busy_over_idle_p99"]["value"] == pytest.approx(2.5)  # 250 / the idle 100
    assert not g["p99_with_explain_busy_over_idle_p99"]["pass"]
    assert _goals(rows, in_process, study, {**loaded, "p99_ms": 150.0})["p99_with_explain_busy_over_idle_p99"][
        "pass"]
    assert _goals(rows, in_process, study, {**loaded, "p99_ms": 150.0, "busy_share": 0.9})[
        "p99_with_explain_busy_over_idle_p99"]["pass"] is False  # a worker went idle: not the condition asked
    assert g["no_errors"]["pass"]


def _report(versions: dict[str, str]) -> dict:
    return {"date": "2026-12-05T09:30:00+00:00", "quick": False, "only": None, "parts": None,
            "machine": {"cpu_model": "AMD EPYC 7B13", "cpu_count": 2, "cpus_usable": 2, "python": "3.11.7",
                        "torch": "2.14.1", "cuda": None},
            "load_average_start": [0.1, 0.2, 0.3], "load_average_end": [1.0, 0.5, 0.4],
            "models": versions, "models_after": versions,
            "suites": {
                "models": {"models": [{"task": "tumor", "role": "student", "arch": "lite0_stage5",
                                       "latency_ms_p50": 12.0, "networks_ms_p50": 10.9, "network_ms_p50": 10.9,
                                       "batch16_images_per_s": 95.0}],
                           "goals": {"predict_minus_networks:tumor/student": goal(1.1, "<=", 1.5, "ms",
                                                                                  serving="predict")}},
                "runtimes": {"goals": {}}, "explain": {"goals": {}, "latency": {}, "throughput": {}},
                "predict": {"rows": [], "goals": {"study_over_its_slices_one_by_one": goal(
                    0.61, "<=", 0.5, serving="study", detail="610 ms / 1000 ms")},
                    "study": {"ratio": 0.61, "cpu_ratio": 0.9, "slices": 32, "slice_model": "dementia/teacher:lite0",
                              "model": "dementia/mil:pooled_head", "study_ms_p50": 610.0,
                              "slices_one_by_one_ms_p50": 1000.0, "compared_with": "32 x POST /predict role=teacher"}}}}


def test_bench_table_from_a_run_names_the_machine_date_and_each_goal():
    shipped = bench_table.shipped_versions()
    assert shipped and all(len(v) == 12 for v in shipped.values())  # every shipped card's version
    report = _report(shipped)
    assert bench_table.problems(report, False, shipped) == []
    text = bench_table.block(report, "bench/results/latest.json")
    assert text.startswith(bench_table.BEGIN) and text.endswith(bench_table.END)
    assert "**2026-12-05 09:30 UTC** on **AMD EPYC 7B13**, 2 cores, no GPU" in text
    assert "| models: predict_minus_networks:tumor/student | 1.10 ms | <= 1.50 ms | PASS |" in text
    assert "| predict: study_over_its_slices_one_by_one (610 ms / 1000 ms) | 0.610x | <= 0.500x | **FAIL** |" in text
    assert "| rendering <= 20% of the maps' compute | not measured | | - |" in text
    assert "0.61x; server CPU time 0.90x |" in text
    assert all(f"{k} `{v}`" in text for k, v in shipped.items())


def test_bench_table_refuses_older_models_quick_and_partial_runs():
    shipped = {"tumor/student": "aaaaaaaaaaaa", "tumor/teacher": "bbbbbbbbbbbb"}
    older = _report({**shipped, "tumor/student": "cccccccccccc"})
    assert any("tumor/student cccccccccccc (shipped: aaaaaaaaaaaa)" in p
               for p in bench_table.problems(older, False, shipped))
    changed = {**_report(shipped), "models_after": {**shipped, "tumor/teacher": "dddddddddddd"}}
    assert any("changed while the run" in p for p in bench_table.problems(changed, False, shipped))
    quick = {**_report(shipped), "quick": True, "only": ["predict"]}
    found = bench_table.problems(quick, False, shipped)
    assert any("--quick" in p for p in found) and any("partial" in p for p in found)
    assert bench_table.problems(quick, True, shipped) == []  # --allow-partial
    failed = _report(shipped)
    failed["suites"]["explain"] = {"error": "boom"}
    assert any("suites failed: explain" in p for p in bench_table.problems(failed, True, shipped))
    unrecorded = {**_report(shipped), "models": None}
    assert any("does not say which model" in p for p in bench_table.problems(unrecorded, True, shipped))


def test_bench_table_replaces_only_its_block(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\nbefore\n{bench_table.BEGIN}\nold table\n{bench_table.END}\nafter\n")
    shipped = bench_table.shipped_versions()
    run = tmp_path / "latest.json"
    run.write_text(json.dumps(_report(shipped)))
    assert bench_table.main(["--json", str(run), "--write", "--doc", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# t\nbefore\n" + bench_table.BEGIN) and text.endswith(bench_table.END + "\nafter\n")
    assert "old table" not in text and "AMD EPYC 7B13" in text
    older = tmp_path / "older.json"
    older.write_text(json.dumps(_report({k: "0" * 12 for k in shipped})))
    assert bench_table.main(["--json", str(older), "--write", "--doc", str(readme)]) == 1
    assert readme.read_text() == text  # refused: untouched
    readme.write_text("no markers")
    with pytest.raises(SystemExit, match="bench-table:begin"):
        bench_table.main(["--json", str(run), "--write", "--doc", str(readme)])


def test_interleaved_timing_calls_each_contender_in_blocks_of_rotating_order():
    from bench.models import _time_interleaved

    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = _time_interleaved(fns, repeats=6, block=3)
    assert calls[:6] == list("aabbcc")  # two warm-up calls each
    timed = "".join(calls[6:])
    assert timed == "aaabbbccc" + "bbbcccaaa"  # two rounds of three calls in a row, the order rotated
    assert {k: len(v) for k, v in times.items()} == {"a": 6, "b": 6, "c": 6}
    assert all(t >= 0 for v in times.values() for t in v)
    calls.clear()
    _time_interleaved(fns, repeats=2)
    assert "".join(calls[6:]) == "abc" + "bca"


def test_interleaved_timing_pauses_before_each_block(monkeypatch):
    import bench.models

    events = []
    monkeypatch.setattr(bench.models.time, "sleep", lambda s: events.append(f"sleep {s}"))
    fns = {name: (lambda name=name: events.append(name)) for name in "ab"}
    bench.models._time_interleaved(fns, repeats=4, block=2, pause_s=0.3)
    assert events == ["a", "a", "b", "b",  # warm-up
                      "sleep 0.3", "a", "a", "sleep 0.3", "b", "b",
                      "sleep 0.3", "b", "b", "sleep 0.3", "a", "a"]
    events.clear()
    bench.models._time_interleaved(fns, repeats=1)
    assert "sleep" not in " ".join(events)  # no pause unless asked for


def test_model_latency_is_timed_on_fixture_slices_decoded_as_served():
    from bench.models import slices
    from diseaseid.data.preprocess import decode_image
    from diseaseid.paths import fixtures_dir

    files = sorted((fixtures_dir() / "tumor").rglob("*.jpg"))
    got = slices("tumor", len(files) + 2)
    assert got.shape == (len(files) + 2, 224, 224, 3) and got.dtype == np.uint8
    assert np.array_equal(got[0], decode_image(files[0].read_bytes()))
    assert np.array_equal(got[len(files)], got[0]) and np.array_equal(got[-1], got[1])  # repeated past the end
    assert (got[0] == 0).mean() > 0.05  # a head-cropped slice: its zero background, unlike uniform noise


def test_explain_overhead_parts_add_up_from_the_jobs_stamps():
    """bench.explain.overhead_parts: from the job's RQ stamps (UTC, with or without a zone) to the four parts, in ms,
    which add up to the end-to-end time less the worker's total."""
    from datetime import UTC, datetime, timedelta

    from bench.explain import OVERHEAD_PARTS, overhead_parts

    sent = datetime(2026, 12, 6, 16, 0, 0, tzinfo=UTC)
    at = lambda ms: sent + timedelta(milliseconds=ms)  # noqa: E731
    body = {"enqueued_at": at(4.0).replace(tzinfo=None).isoformat(),  # RQ's naive UTC
            "started_at": at(6.5).isoformat(),  # an aware one
            "ended_at": at(106.5).replace(tzinfo=None).isoformat(),
            "result": {"timing_ms": {"total": 98.0}}}
    parts = overhead_parts(sent, at(111.0), body)
    assert list(parts) == list(OVERHEAD_PARTS)
    assert parts == pytest.approx({"to_enqueued": 4.0, "queued": 2.5, "job_beyond_total": 2.0,
                                   "ended_to_client": 4.5}, abs=1e-6)
    assert sum(parts.values()) == pytest.approx(111.0 - 98.0, abs=1e-6)


def test_only_a_whole_run_replaces_the_committed_report():
    from bench.__main__ import report_name

    assert report_name(False, None, None) == "latest"
    assert report_name(False, ["explain"], None) == "partial" and report_name(False, None, ["load"]) == "partial"
    assert report_name(True, None, None) == "quick" and report_name(True, ["predict"], ["study"]) == "quick"


def test_bench_table_gives_explains_time_beyond_the_worker_where_a_run_measured_it():
    shipped = bench_table.shipped_versions()
    report = _report(shipped)
    row = {"p50_ms": 132.2, "worker_predict_p50_ms": 8.5, "worker_explain_p50_ms": 91.7,
           "worker_render_p50_ms": 10.4, "worker_total_p50_ms": 115.9}
    report["suites"]["explain"]["latency"] = {"student/cpu": row}
    text = bench_table.block(report, "bench/results/latest.json")
    assert "| `POST /explain` to finished, Grad-CAM + LRP, student/cpu | p50 132 ms (worker: predict 8 + maps 92 " \
           "+ render 10 = 116 ms) |" in text  # a run from before the parts were measured
    row["overhead_p50_ms"] = {"to_enqueued": 6.4, "queued": 3.2, "job_beyond_total": 0.5, "ended_to_client": 4.9}
    text = bench_table.block(report, "bench/results/latest.json")
    assert ("= 116 ms; beyond it, from the job's stamps: to enqueued 6.4, queued 3.2, job beyond total 0.5, "
            "ended to client 4.9 ms) |") in text
