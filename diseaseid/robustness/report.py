"""The robustness results as markdown tables (docs/robustness.md embeds them; README quotes the summary)."""
from __future__ import annotations


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown(results: dict[str, dict]) -> str:
    lines = []
    for task, r in results.items():
        if "rows" not in r:  # whole studies alone (``--n 0``)
            lines += [f"### {task}: whole studies", ""] + (studies_markdown(r["studies"]) if "studies" in r else [])
            continue
        roles = list(r["models"])
        metric = "balanced accuracy (slices)" if task == "dementia" else "accuracy"
        key = "balanced_accuracy" if task == "dementia" else "accuracy"
        lines += [f"### {task}: {r['n']} validation slices, seed {r['seed']}"
                  + (" (in sample: the shipped dementia models are fitted on every subject)" if r["in_sample"]
                     else ""), "",
                  "Models: " + ", ".join(f"{role} `{m['version']}` ({m['name']}, pre-processing "
                                         f"{m['preprocess']})" for role, m in r["models"].items()), "",
                  f"Per model: {metric} % / answers changed % / flagged as not an MRI %; "
                  "served accuracy counts a flagged slice as a miss. Rows marked * are beyond the realistic "
                  "levels (no goal).", "",
                  "| change | level | " + " | ".join(f"{role} {metric} | changed | flagged | served"
                                                    for role in roles) + " |",
                  "|---|---|" + "---:|---:|---:|---:|" * len(roles)]
        for row in r["rows"]:
            cells = []
            for role in roles:
                m = row["models"][role]
                cells += [_pct(m[key]), _pct(m["changed"]) if "changed" in m else "-", _pct(m["flagged"]),
                          _pct(m["served_accuracy"])]
            star = "" if row["realistic"] else " *"
            lines.append(f"| {row['family']}{star} | {row['level']} | " + " | ".join(cells) + " |")
        lines.append("")
        if "non_mri" in r:
            nm = r["non_mri"]
            lines += [f"Non-MRI images ({nm['set']} set, decoded as uploads): {_pct(nm['flagged'])}% of {nm['n']} "
                      "flagged" + (f"; missed: {', '.join(nm['missed'])}" if nm["missed"] else "") + ".", ""]
        if "relevance_inside_head" in r:
            lines += ["Positive relevance inside the head (mean, minimum over slices): " + "; ".join(
                f"{role} " + ", ".join(f"{m} {_pct(v['mean'])}% (min {_pct(v['min'])}%)" for m, v in rel.items())
                for role, rel in r["relevance_inside_head"].items()) + ".", ""]
        held = [role for role in roles if "held_out" in r["rows"][0]["models"][role]]
        if held:
            fitted = ", ".join(f"{role} on {r['held_out'][role]['subjects']} subjects" for role in held)
            lines += [f"Held out: each head refitted by its recipe without the sample's subjects ({fitted}), "
                      f"on the shipped model's features: what a new patient gets. {metric} % / answers changed %.",
                      "", "| change | level | " + " | ".join(f"{role} held out | changed" for role in held) + " |",
                      "|---|---|" + "---:|---:|" * len(held)]
            for row in r["rows"]:
                cells = []
                for role in held:
                    m = row["models"][role]["held_out"]
                    cells += [_pct(m[key]), _pct(m["changed"]) if "changed" in m else "-"]
                star = "" if row["realistic"] else " *"
                lines.append(f"| {row['family']}{star} | {row['level']} | " + " | ".join(cells) + " |")
            lines.append("")
        if "studies" in r:
            lines += studies_markdown(r["studies"])
        s = r["summary"]
        lines += ["Summary over the realistic rows: " + "; ".join(
            f"{role}: clean {_pct(v['clean'])}%, worst drop {_pct(v['worst_drop'])} pt ({v['worst_drop_at']}), "
            f"most changed {_pct(v['worst_changed'])}% ({v['worst_changed_at']}), most flagged "
            f"{_pct(v['worst_flagged'])}% ({v['worst_flagged_at']})"
            + (f"; held out: clean {_pct(v['held_out']['clean'])}%, most changed "
               f"{_pct(v['held_out']['worst_changed'])}% ({v['held_out']['worst_changed_at']})"
               if "held_out" in v else "") for role, v in s.items()) + ".", ""]
    return "\n".join(lines)


def studies_markdown(st: dict) -> list[str]:
    """The whole-study table (``diseaseid.robustness.studies``): per reader, subject-level balanced accuracy,
    subjects whose answer changed, subjects left without a diagnosis, and the share of slice answers changed."""
    readers = list(st["readers"])
    counts = ", ".join(f"{n} {c}" for c, n in st["class_counts"].items())
    lines = [f"Whole studies: {st['subjects']} subjects ({counts}; {st['slices']} slices), every slice of a series "
             f"under the same change, each reader's classifier refitted without the subject ({st['folds']} subject "
             "folds): subject-level balanced accuracy % (over the classes the cards score, where they name them) / "
             "subjects whose answer changed (count) / subjects without a "
             "diagnosis % / slice answers changed %.", "",
             "| change | level | " + " | ".join(
                 f"{name}{' (served)' if name == st.get('shipped') else ''} | changed | undiagnosed | slices changed"
                 for name in readers) + " |", "|---|---|" + "---:|---:|---:|---:|" * len(readers)]
    for row in st["rows"]:
        cells = []
        for name in readers:
            m = row["readers"][name]
            s = m["subjects"]
            cells += [_pct(s.get("balanced_accuracy_scored", s["balanced_accuracy"])),
                      f"{_pct(s['changed'])} ({s['changed_n']})" if "changed" in s else "-",
                      _pct(s["no_diagnosis"]),
                      _pct(m["slices"]["changed"]) if "changed" in m["slices"] else "-"]
        star = "" if row["realistic"] else " *"
        lines.append(f"| {row['family']}{star} | {row['level']} | " + " | ".join(cells) + " |")
    lines += ["", "Whole studies, over the realistic rows: " + "; ".join(
        f"{name}: clean {_pct(v.get('clean_balanced_accuracy_scored') or v['clean_balanced_accuracy'])}%, "
        f"most changed {_pct(v['worst_changed'])}% "
        f"({v['worst_changed_at']}), changes above 10%: {', '.join(v['over_10_percent']) or 'none'}"
        for name, v in st["summary"].items()) + ".", ""]
    return lines
