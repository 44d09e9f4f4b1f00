"""The benchmark table (docs/benchmarks.md, which README's "Benchmarks" links), generated from one `make bench`
run's JSON.

    .venv/bin/python scripts/bench_table.py                # print the block
    .venv/bin/python scripts/bench_table.py --write        # replace the block in docs/benchmarks.md

The block goes between ``<!-- bench-table:begin -->`` and ``<!-- bench-table:end -->`` (``--doc``: another
file with them, e.g. README.md); nothing else in the file is touched. It names the run's date, the machine (CPU
model and cores, as the run recorded them from /proc/cpuinfo), its load, and the versions of the models
measured; then every goal of the run as a number against its target with PASS or FAIL, and the main
measurements.

It refuses (exit 1, saying why) a run that cannot stand for the shipped models: a ``--quick`` or partial run
(``--only``, ``--part``; unless ``--allow-partial``), a suite that failed, or a run whose models are not the
ones shipped now or changed while it ran, so that no row comes from an older model.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.goals import SERVING_GOALS, _fmt  # noqa: E402

BEGIN, END = "<!-- bench-table:begin -->", "<!-- bench-table:end -->"
FULL = ("models", "runtimes", "predict", "explain")  # the suites the serving goals (SERVING_GOALS) come from


def shipped_versions() -> dict[str, str]:
    from diseaseid.cards import read_card

    versions = {}
    for card in sorted((ROOT / "weights").glob("*/*.json")):
        if card.stem in ("student", "teacher", "mil") and card.with_suffix(".safetensors").exists():
            versions[f"{card.parent.name}/{card.stem}"] = str(read_card(card).get("version"))
    return versions


def problems(report: dict, allow_partial: bool, shipped: dict[str, str]) -> list[str]:
    """Why this run cannot give the benchmark table (none: it can)."""
    found = []
    if not allow_partial:
        if report.get("quick"):
            found.append("a --quick run (fewer repeats)")
        if report.get("only") or report.get("parts"):
            found.append(f"a partial run (--only {report.get('only')}, --part {report.get('parts')})")
        missing = [s for s in FULL if s not in report.get("suites", {})]
        if missing:
            found.append(f"suites missing: {', '.join(missing)}")
    failed = [name for name, r in report.get("suites", {}).items() if isinstance(r, dict) and "error" in r]
    if failed:
        found.append(f"suites failed: {', '.join(failed)}")
    measured = report.get("models")
    if not measured:
        found.append("the run does not say which model versions it measured (a run from before bench recorded them)")
    else:
        if report.get("models_after") not in (None, measured):
            found.append("the shipped models changed while the run went on")
        older = {k: v for k, v in measured.items() if shipped.get(k) != v}
        if older or set(shipped) - set(measured):
            found.append("the run measured other models than the shipped ones: "
                         + ", ".join(f"{k} {v} (shipped: {shipped.get(k, 'none')})" for k, v in older.items())
                         + ", ".join(f"{k} not measured" for k in set(shipped) - set(measured)))
    return found


def _goal_rows(report: dict) -> list[str]:
    rows = []
    measured = set()
    for suite, result in report.get("suites", {}).items():
        for name, g in (result.get("goals") or {}).items() if isinstance(result, dict) else ():
            if isinstance(g, bool):
                rows.append(f"| {suite}: {name} | | | {'PASS' if g else 'FAIL'} |")
                continue
            measured.add(g.get("serving") or g.get("issue27"))  # issue27: reports written before 2026-12-05
            value = "not measured" if g["value"] is None else _fmt(g["value"], g["unit"])
            what = f"{suite}: {name}" + (f" ({g['detail']})" if g.get("detail") else "")
            rows.append(f"| {what} | {value} | {g['op']} {_fmt(g['target'], g['unit'])} | "
                        f"{'PASS' if g['pass'] else '**FAIL**'} |")
    for key, (_, what) in SERVING_GOALS.items():
        if key not in measured:
            rows.append(f"| {what} | not measured | | - |")
    return rows


def _measurement_rows(report: dict) -> list[str]:
    s = report.get("suites", {})
    rows = []
    for r in (s.get("models") or {}).get("models", []):
        nan = float("nan")
        rows.append(f"| `predict()`, {r['task']}/{r['role']} ({r['arch']}), 1 image | p50 {r['latency_ms_p50']:.1f} ms "
                    f"(its networks {r.get('networks_ms_p50', nan):.1f} ms, the answering network "
                    f"{r.get('network_ms_p50', nan):.1f} ms); {r['batch16_images_per_s']:.0f} images/s at batch 16 |")
    runtimes = s.get("runtimes") or {}
    if runtimes.get("geomean_batch1_ms"):
        means = ", ".join(f"{n} {v:.1f}" for n, v in sorted(runtimes["geomean_batch1_ms"].items(),
                                                            key=lambda kv: kv[1]))
        rows.append(f"| network runtimes, geometric mean of batch-1 ms over the models | {means}; "
                    f"served: {runtimes.get('served')}, fastest: {runtimes.get('winner')} |")
    shared = runtimes.get("geomean_callers4_per_s")
    if shared:
        rates = ", ".join(f"{n} {v:.0f}" for n, v in sorted(shared.items(), key=lambda kv: -kv[1]))
        rows.append(f"| network runtimes, geometric mean of batch-1 calls/s with 4 callers at once (as a loaded "
                    f"service calls) | {rates} |")
    predict = s.get("predict") or {}
    for r in predict.get("rows", []):
        rows.append(f"| `POST /predict`, tumor {r['model']}, {r['clients']} client(s) | p50 {r['p50_ms']:.1f} ms, "
                    f"p99 {r['p99_ms']:.1f} ms, {r['throughput_rps']:.1f} requests/s, {r['errors']} errors |")
    study = predict.get("study") or {}
    if "ratio" in study:
        cpu = f"; server CPU time {study['cpu_ratio']:.2f}x" if study.get("cpu_ratio") is not None else ""
        rows.append(f"| `POST /predict/study`, {study['slices']} dementia slices (slices: {study['slice_model']}; "
                    f"subject: {study['model']}) | {study['study_ms_p50']:.0f} ms against "
                    f"{study['slices_one_by_one_ms_p50']:.0f} ms for {study['compared_with']}: "
                    f"{study['ratio']:.2f}x{cpu} |")
    loaded = predict.get("under_explain_load") or {}
    if loaded:
        rows.append(f"| `POST /predict`, student, 16 clients, {loaded['explain_workers']} explain worker(s) busy | "
                    f"p50 {loaded['p50_ms']:.1f} ms, p99 {loaded['p99_ms']:.1f} ms, "
                    f"{loaded['throughput_rps']:.1f} requests/s |")
    explain = s.get("explain") or {}
    for name, r in explain.get("latency", {}).items():
        beyond = r.get("overhead_p50_ms")  # runs since 2026-12-06 16:21 (bench.explain.overhead_parts)
        beyond = ("; beyond it, from the job's stamps: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f}"
                                                                     for k, v in beyond.items()) + " ms"
                  if beyond else "")
        rows.append(f"| `POST /explain` to finished, Grad-CAM + LRP, {name} | p50 {r['p50_ms']:.0f} ms (worker: "
                    f"predict {r['worker_predict_p50_ms']:.0f} + maps {r['worker_explain_p50_ms']:.0f} + render "
                    f"{r['worker_render_p50_ms']:.0f} = {r['worker_total_p50_ms']:.0f} ms{beyond}) |")
    for name, r in explain.get("throughput", {}).items():
        rows.append(f"| explain throughput, {name}, {r['jobs']} jobs | {r['jobs_per_s']:.1f} jobs/s |")
    for run in (s.get("explainers") or {}).get("runs", []):
        cells = ", ".join(f"{name} {r['p50_ms']:.1f} ms" for name, r in run["rows"].items() if "p50_ms" in r)
        rows.append(f"| explainers, {run['arch']} on {run['device']}, {run['threads']} thread(s), batch 1 | {cells} |")
    training = s.get("training") or {}
    if training and "error" not in training:
        cells = "; ".join(f"{case}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items())
                          for case, row in training.items())
        rows.append(f"| training, ms per image (batch 32) | {cells} |")
    return rows


def block(report: dict, source: str) -> str:
    m = report.get("machine", {})
    when = dt.datetime.fromisoformat(report["date"]).strftime("%Y-%m-%d %H:%M UTC")
    cores = m.get("cpu_count")
    usable = m.get("cpus_usable")
    gpu = m.get("cuda") or "no GPU"
    load = f"load average {report.get('load_average_start')} at the start, {report.get('load_average_end')} at the end"
    models = ", ".join(f"{k} `{v}`" for k, v in sorted((report.get("models") or {}).items()))
    lines = [
        BEGIN,
        f"<!-- generated by scripts/bench_table.py from {source}; edit that script, not this block -->",
        f"`make bench` of **{when}** on **{m.get('cpu_model') or 'an unknown CPU'}**, {cores} cores"
        + (f" ({usable} usable)" if usable and usable != cores else "")
        + f", {gpu}, Python {m.get('python')}, torch {m.get('torch')}; {load}"
        + (" (`--quick`)" if report.get("quick") else "") + f". Models measured: {models}.",
        "",
        "| goal | measured | target | |",
        "|---|---|---|---|",
        *_goal_rows(report),
        "",
        "| what | result |",
        "|---|---|",
        *_measurement_rows(report),
        END,
    ]
    return "\n".join(lines)


def write(doc: Path, text: str) -> None:
    content = doc.read_text()
    if content.count(BEGIN) != 1 or content.count(END) != 1:
        raise SystemExit(f"{doc} needs exactly one {BEGIN} ... {END} pair where the table goes")
    head, rest = content.split(BEGIN)
    _, tail = rest.split(END)
    doc.write_text(head + text + tail)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "latest.json"), help="the run's JSON")
    ap.add_argument("--write", action="store_true", help="replace the block in --doc")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"), help="the file holding the block")
    ap.add_argument("--allow-partial", action="store_true", help="accept a --quick or partial run")
    args = ap.parse_args(argv)
    path = Path(args.json)
    report = json.loads(path.read_text())
    found = problems(report, args.allow_partial, shipped_versions())
    if found:
        print(f"{path}: not the benchmark table's run: " + "; ".join(found), file=sys.stderr)
        return 1
    source = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    text = block(report, source)
    if args.write:
        write(Path(args.doc), text)
        print(f"wrote the table of {path} into {args.doc}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
