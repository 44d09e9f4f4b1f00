"""Draw the pictures of docs/architecture.md: the packages with their imports, and the two request paths.

    .venv/bin/python -m dev.architecture_pictures           # rewrite docs/img/architecture-*.svg
    .venv/bin/python -m dev.architecture_pictures --check   # only find every step; exit 1 when one is gone

The package picture is measured: every import statement in ``diseaseid/``, ``services/``, ``bench/``, ``dev/``
and ``scripts/`` (tests are left out; imports under ``if TYPE_CHECKING:`` too, since they never run), grouped
into the boxes of ``LAYOUT``. A box the layout does not know yet is drawn at the end of its band.

The request paths are drawn from ``PATHS``: each step names a definition and the folder it is in, and the
script finds the one file there that defines it, so the picture puts every step in the package where it
lives today; a step whose definition is gone (or defined twice) stops the script with its name.
"""
from __future__ import annotations

import argparse
import ast
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
SOURCES = ("diseaseid", "services", "bench", "dev", "scripts")
TOOLS = ("bench", "dev", "scripts")

# Box -> (row, caption). Rows run from the clients at the top down to the core's base; an import normally
# points down a row or more.
LAYOUT: dict[str, tuple[int, str]] = {
    "services/bot": (0, "Telegram bot (aiogram): HTTP client"),
    "services/web": (0, "web page: HTTP client"),
    "services/pacs": (0, "Orthanc bridge: HTTP client"),
    "services/inference": (1, "POST /predict, /predict/study"),
    "services/explain/api": (1, "POST /explain, GET results"),
    "services/explain/worker": (1, "RQ worker: explain_job"),
    "services/explain": (2, "settings, Redis store, sealing, liveness"),
    "services/common": (3, "build_app, errors, auth, uploads, logs"),
    "diseaseid/cli": (4, "the `diseaseid` command"),
    "diseaseid/train": (5, "training, distillation, CV"),
    "diseaseid/robustness": (5, "acquisition changes"),
    "diseaseid/explain": (5, "LRP, Grad-CAM, panels"),
    "diseaseid/serving": (6, "Predictor, studies, export"),
    "diseaseid/ood": (6, "OOD: detector, fitting, non-MRI images"),
    "diseaseid/models": (7, "registry, checkpoints"),
    "diseaseid/data": (7, "decoding, head crop, splits"),
    "diseaseid/*": (8, "tasks, paths, outcomes, percent, memory"),
}
GROUND = "diseaseid/*"  # drawn as a bar under everything: nearly every box imports it
BANDS = {"services": (0, 3), "diseaseid": (4, 7)}


def box_of(path: str) -> str | None:
    """The box a source file is drawn in (None: not drawn)."""
    parts = path.split("/")
    top = parts[0]
    if top == "diseaseid":
        if parts[1] in ("cli.py", "__main__.py", "cli"):
            return "diseaseid/cli"
        return f"diseaseid/{parts[1]}" if len(parts) > 2 else "diseaseid/*"
    if top == "services":
        if len(parts) == 2:
            return None
        if parts[1] == "explain" and len(parts) > 3 and parts[2] in ("api", "worker"):
            return f"services/explain/{parts[2]}"
        return f"services/{parts[1]}"
    return top


def source_files() -> dict[str, str]:
    """Module name -> path, for every Python file drawn."""
    modules = {}
    for top in SOURCES:
        for p in sorted((ROOT / top).rglob("*.py")):
            rel = p.relative_to(ROOT).as_posix()
            name = rel[:-3].replace("/", ".")
            modules[name.removesuffix(".__init__")] = rel
    return modules


def _type_checking_only(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return ids


def imported_files(rel: str, modules: dict[str, str]) -> set[str]:
    """The drawn files that ``rel`` imports (at any depth of its code)."""
    tree = ast.parse((ROOT / rel).read_text())
    skip = _type_checking_only(tree)
    here = rel[:-3].replace("/", ".").removesuffix(".__init__")
    package = here if rel.endswith("__init__.py") else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(modules[name])
    found.discard(rel)
    return found


def import_edges() -> Counter[tuple[str, str]]:
    """(box A, box B) -> how many files of A import a file of B."""
    modules = source_files()
    edges: Counter[tuple[str, str]] = Counter()
    for rel in modules.values():
        a = box_of(rel)
        for b in {box_of(t) for t in imported_files(rel, modules)}:
            if a and b and a != b:
                edges[a, b] += 1
    return edges


# -- request paths -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    lane: str  # a folder to look in, or "client" / "Redis" for what is no code of ours
    name: str  # a definition: function, Class, or Class.method ("" for client and Redis)
    says: str
    new_request: bool = False  # the client asks again: no arrow from the step before


PATHS: dict[str, tuple[str, list[Step]]] = {
    "predict": ("POST /predict: one slice in, one answer out (one process)", [
        Step("client", "", "POST /predict: a multipart form, file + task (+ role, format)"),
        Step("services/inference", "predict", "the route: form values, then the steps below"),
        Step("services/common", "resolve_task", "task and role checked against the registry"),
        Step("services/common", "read_upload_bytes", "body read while streaming; 413 over the limit"),
        Step("services/common", "DecodeGate.decode", "large images take turns; pixel cap from the header"),
        Step("services/common", "decode_image_bytes", "sniff JPEG / PNG / DICOM, decode"),
        Step("diseaseid/data", "head_crop", "the head alone, square, 224 x 224 uint8"),
        Step("services/inference", "ModelRunner.run", "on the inference threads"),
        Step("diseaseid/serving", "Predictor.predict", "logits, temperature-scaled probabilities"),
        Step("diseaseid", "FeatureDetector.score", "the task's OOD detector: flagged = no diagnosis"),
        Step("diseaseid/serving", "Prediction.to_dict", "the one answer shape (diseaseid/answers.py)"),
        Step("services/inference", "dicom_answer", "Accept: application/dicom: the answer as an SR"),
        Step("client", "", "200: the JSON answer (or the DICOM SR)"),
    ]),
    "explain": ("POST /explain -> worker -> panel.png (two processes and Redis)", [
        Step("client", "", "POST /explain: a multipart form, file + task (+ role, methods, target)"),
        Step("services/explain/api", "create_explain_job", "the route: task, role, methods, target"),
        Step("services/common", "read_image_upload", "streamed, sniffed, decoded as for /predict"),
        Step("services/explain", "Sealer.seal", "pixels sealed (AES-256-GCM) before Redis"),
        Step("services/explain/api", "submit", "dedup entry + enqueue in one transaction"),
        Step("Redis", "", "the job waits on the queue; the API answers 202 + job id"),
        Step("services/explain/worker", "ExplainWorker.perform_job", "an RQ worker takes the job"),
        Step("services/explain/worker", "explain_job", "the job; returns diseaseid/answers.py's shape"),
        Step("services/explain", "Sealer.open", "pixels unsealed"),
        Step("services/explain/worker", "model_pool", "models loaded once per process"),
        Step("diseaseid/explain", "explain_slice", "predict, maps, overlays, panel: as the CLI"),
        Step("diseaseid/serving", "Predictor.predict", "calibrated, OOD-checked prediction"),
        Step("diseaseid/explain", "explain_maps", "Grad-CAM and LRP from one forward pass"),
        Step("diseaseid/explain", "panel_png", "the titled panel"),
        Step("services/explain", "ExplainStore.put_results", "files sealed into Redis, with the job's TTL"),
        Step("Redis", "", "result and files under the job id"),
        Step("client", "", "GET /explain/{id}?wait=30 (long poll)", new_request=True),
        Step("services/explain/api", "job_view", "status; when finished the result and file links"),
        Step("client", "", "GET /explain/{id}/panel.png", new_request=True),
        Step("services/explain/api", "get_panel_png", "the route: the owner's job only"),
        Step("services/explain", "ExplainStore.get_result", "bytes from Redis, unsealed"),
        Step("client", "", "200 image/png"),
    ]),
}
OUTSIDE = ("client", "Redis")


def definitions(rel: str) -> set[str]:
    """Top-level functions and classes of a file, and ``Class.method`` for their methods."""
    names = set()
    for node in ast.parse((ROOT / rel).read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(f"{node.name}.{m.name}" for m in node.body
                         if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef))
    return names


def locate(step: Step, modules: dict[str, str]) -> str:
    """The one file under ``step.lane`` that defines ``step.name``."""
    files = [rel for rel in modules.values() if rel.startswith(step.lane + "/") and step.name in definitions(rel)]
    if len(files) != 1:
        where = ", ".join(files) or "no file"
        raise SystemExit(f"step {step.name!r} under {step.lane}/: defined in {where}; update PATHS in {__file__}")
    return files[0]


def resolved(steps: list[Step]) -> list[tuple[Step, str, str]]:
    """(step, its file or "", its lane in the picture)."""
    modules = source_files()
    out = []
    for s in steps:
        if s.lane in OUTSIDE:
            out.append((s, "", s.lane))
        else:
            rel = locate(s, modules)
            out.append((s, rel, box_of(rel) or s.lane))
    return out


# -- drawing -----------------------------------------------------------------------------------------------
COLOURS = {"services": "#f3dede", "diseaseid": "#dde7f3", "tools": "#ece6d8", "client": "#eeeeee",
           "Redis": "#f6e7c8"}


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "diseaseid", "font.family": "DejaVu Sans"})
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    return fig, ax


def _save(fig, name: str) -> Path:
    import matplotlib.pyplot as plt

    path = OUT / name
    fig.savefig(path, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return path


def _box(ax, x: float, y: float, w: float, h: float, colour: str, title: str, text: str = "",
         title_size: float = 9) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.06", fc=colour,
                                ec="#555555", lw=0.8))
    ax.text(x + w / 2, y + (h * 0.36 if text else h / 2), title, ha="center", va="center", size=title_size,
            weight="bold")
    if text:
        ax.text(x + w / 2, y + h * 0.72, text, ha="center", va="center", size=7, color="#333333")


def _arrow(ax, a: tuple[float, float], b: tuple[float, float], colour: str, width: float, rad: float,
           dashed: bool = False) -> None:
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=8, color=colour, lw=width,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=0, shrinkB=0, alpha=0.85,
                                 linestyle=(0, (4, 2)) if dashed else "-"))


def _ports(ends: list[tuple[str, float]], x: float, w: float) -> dict[str, float]:
    """Where the arrows of one box side meet it: spread over its middle, in the order of the far ends' x."""
    ends = sorted(ends, key=lambda e: e[1])
    return {name: x + w * (0.2 + 0.6 * (i + 0.5) / len(ends)) for i, (name, _) in enumerate(ends)}


def draw_packages() -> Path:
    import textwrap

    from matplotlib.patches import Rectangle

    edges = import_edges()
    core = sorted(({b for pair in edges for b in pair} | set(LAYOUT)) - set(TOOLS) - {GROUND})
    rows: dict[int, list[str]] = {}
    for b in LAYOUT:
        if b in core:
            rows.setdefault(LAYOUT[b][0], []).append(b)
    for b in core:  # a box the layout does not know: the end of its band's last row
        if b not in LAYOUT:
            rows.setdefault(BANDS[b.split("/")[0]][1], []).append(b)
    bw, bh, gap_x, row_h, left, top = 2.45, 0.6, 0.45, 0.95, 0.6, 0.85
    inner = 3 * bw + 2 * gap_x
    ground_y = top + row_h * (max(rows) + 1)
    width = left + inner + 0.45 + bw + 0.25
    height = ground_y + bh + 0.95
    fig, ax = _figure(width, height)
    where: dict[str, tuple[float, float]] = {}
    row_of: dict[str, int] = {}
    for r, names in rows.items():
        span = len(names) * bw + (len(names) - 1) * gap_x
        for i, b in enumerate(names):
            where[b] = (left + (inner - span) / 2 + i * (bw + gap_x), top + r * row_h)
            row_of[b] = r
    for band, (r0, r1) in BANDS.items():
        y0 = top + r0 * row_h - 0.2
        y1 = (ground_y + bh if band == "diseaseid" else top + r1 * row_h + bh) + 0.2
        ax.add_patch(Rectangle((0.15, y0), left + inner + 0.05, y1 - y0, fc=COLOURS[band], alpha=0.35, ec="none"))
        ax.text(0.25, y0 + 0.1, f"{band}/", size=10, weight="bold", va="top", rotation=90)
    drawn = {(a, b): n for (a, b), n in edges.items() if a in where and b in where}
    centre = {b: x + bw / 2 for b, (x, _) in where.items()}
    down_out = {b: _ports([(t, centre[t]) for (a, t) in drawn if a == b and row_of[t] > row_of[b]], x, bw)
                for b, (x, _) in where.items()}
    down_in = {b: _ports([(s, centre[s]) for (s, t) in drawn if t == b and row_of[s] < row_of[b]], x, bw)
               for b, (x, _) in where.items()}
    up = 0
    for (a, b), n in sorted(drawn.items()):
        (xa, ya), (xb, yb) = where[a], where[b]
        lw = 0.5 + 0.45 * math.log2(n)
        if row_of[b] > row_of[a]:
            # An arrow that skips rows passes behind their boxes: dashed, so that it reads as passing.
            _arrow(ax, (down_out[a][b], ya + bh), (down_in[b][a], yb), "#7a7a7a", lw, 0.0,
                   dashed=row_of[b] - row_of[a] > 1)
        elif row_of[b] == row_of[a]:
            right = xb > xa
            start = (xa + bw if right else xa, ya + bh * (0.35 if right else 0.65))
            end = (xb if right else xb + bw, yb + bh * (0.35 if right else 0.65))
            _arrow(ax, start, end, "#3b6fb6", lw, 0.0)
        else:
            up += 1
            _arrow(ax, (xa + bw * 0.9, ya), (xb + bw * 0.9, yb + bh), "#d62728", lw, -0.25)
    for b, (x, y) in where.items():
        colour = COLOURS["services" if b.startswith("services") else "diseaseid"]
        _box(ax, x, y, bw, bh, colour, b + "/", LAYOUT.get(b, (0, "(not in the layout yet)"))[1])
    users = sorted({a for (a, b) in edges if b == GROUND and a not in TOOLS})
    _box(ax, left, ground_y, inner, bh, COLOURS["diseaseid"], "diseaseid/*.py: " + LAYOUT[GROUND][1],
         f"the ground: {len(users)} of the {len(where)} boxes above import it; those arrows are not drawn")
    tx = left + inner + 0.45
    ax.text(tx + bw / 2, top - 0.3, "tools (never deployed)", ha="center", size=8, weight="bold")
    for i, t in enumerate(TOOLS):
        targets = sorted({b.removeprefix("diseaseid/") for (a, b) in edges if a == t})
        _box(ax, tx, top + i * row_h, bw, bh, COLOURS["tools"], f"{t}/",
             "\n".join(textwrap.wrap("uses " + ", ".join(targets), 44)), title_size=8.5)
    ax.text(0.2, 0.35, "Packages and their imports (measured from the code)", size=12, weight="bold")
    ax.text(0.2, height - 0.5, "arrow A -> B: a module of A imports one of B (thicker: more modules); "
            "grey: down a row, "
            f"dashed: down past rows, blue: within a row, red: up, against the layering ({up} today).", size=7.5)
    ax.text(0.2, height - 0.25, "Redrawn by .venv/bin/python -m dev.architecture_pictures; tests and TYPE_CHECKING "
            "imports are left out.", size=7.5, color="#555555")
    return _save(fig, "architecture-packages.svg")


def draw_path(key: str) -> Path:
    from matplotlib.patches import Rectangle

    title, steps = PATHS[key]
    placed = resolved(steps)
    lanes: list[str] = []
    for _, _, lane in placed:
        if lane not in lanes and lane != "client":
            lanes.append(lane)
    lanes.insert(0, "client")
    text_w, lane_w, step_h, top, left = 4.3, 1.85, 0.5, 1.0, 0.2
    width = left + text_w + lane_w * len(lanes) + 0.2
    height = top + step_h * len(placed) + 0.55
    fig, ax = _figure(width, height)
    x_of = {lane: left + text_w + i * lane_w for i, lane in enumerate(lanes)}
    for lane, x in x_of.items():
        band = lane if lane in OUTSIDE else lane.split("/")[0]
        ax.add_patch(Rectangle(
            (x + 0.04, top - 0.45), lane_w - 0.08, step_h * len(placed) + 0.45,
            fc=COLOURS.get(band, "#eeeeee"), alpha=0.35, ec="none"))
        ax.text(x + lane_w / 2, top - 0.25, lane + ("" if lane in OUTSIDE else "/"), ha="center", va="center",
                size=7.5, weight="bold")
    centres = []
    for i, (step, rel, lane) in enumerate(placed):
        y = top + i * step_h
        ax.text(left, y + step_h / 2, f"{i + 1:>2}. {step.says}", va="center", size=7.5)
        x = x_of[lane]
        is_class = step.name[:1].isupper() and "." not in step.name
        label = step.name if is_class else f"{step.name}()"
        if rel:
            _box(ax, x + 0.08, y + 0.06, lane_w - 0.16, step_h - 0.12, "#ffffff", label, Path(rel).name,
                 title_size=7)
        else:
            _box(ax, x + 0.08, y + 0.06, lane_w - 0.16, step_h - 0.12, COLOURS[lane], lane, title_size=7)
        centres.append((x + lane_w / 2, y + step_h / 2))
    for ((xa, ya), (xb, yb)), (step, _, _) in zip(zip(centres, centres[1:]), placed[1:]):
        if step.new_request:
            ax.plot([left, width - 0.2], [yb - step_h / 2, yb - step_h / 2], color="#999999", lw=0.6, ls=":")
        elif xa == xb:
            _arrow(ax, (xa, ya + step_h / 2 - 0.06), (xb, yb - step_h / 2 + 0.06), "#555555", 0.8, 0)
        else:
            side = 1 if xb > xa else -1
            _arrow(ax, (xa + side * (lane_w / 2 - 0.08), ya), (xb - side * (lane_w / 2 - 0.08), yb), "#555555",
                   0.8, 0)
    moves = sum(1 for a, b in zip(placed, placed[1:]) if a[2] != b[2] and not b[0].new_request)
    ax.text(left, 0.3, title, size=11, weight="bold")
    ax.text(left, 0.55, f"{len(placed)} steps in {len(lanes)} places, {moves} moves between them; each box is "
            "the definition that does the step, in the file named under it.", size=7.5, color="#444444")
    ax.text(left, height - 0.25, "Redrawn by .venv/bin/python -m dev.architecture_pictures from its PATHS: each "
            "step is found in the code, so a moved function moves its box.", size=7, color="#555555")
    return _save(fig, f"architecture-{key}.svg")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only find every step of PATHS; draw nothing")
    args = parser.parse_args(argv)
    for key, (_, steps) in PATHS.items():
        for step, rel, lane in resolved(steps):
            if args.check:
                print(f"{key:8} {lane:26} {step.name or '-':30} {rel}")
    if args.check:
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for path in (draw_packages(), draw_path("predict"), draw_path("explain")):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
