#!/usr/bin/env python3
"""Turn the outputs of bench/run.sh into one table.

Reads the scratch folder that run.sh filled (classify stats.json, mamori-score
and mamori-baseline JSON, /usr/bin/time -v output, the LSH pair lists, the
LCS kernel's output), prints a plain-text table on stdout and, with --doc,
writes the same results as Markdown into the document between the markers
<!-- bench:begin --> and <!-- bench:end --> (appending the markers when the
document has none). Missing pieces are shown as "n/a", never invented.
Standard library only.
"""
import argparse
import csv
import datetime
import json
import os
import platform
import re
import sys

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
STAGES = ["ingest", "disasm", "similarity", "cluster", "output"]


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def time_v(path):
    """Maximum RSS (MB) and elapsed seconds from `/usr/bin/time -v` output."""
    text = read_text(path) or ""
    rss = wall = None
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if m:
        rss = int(m.group(1)) / 1024.0
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if m:
        secs = 0.0
        for part in m.group(1).split(":"):
            secs = secs * 60 + float(part)
        wall = secs
    return rss, wall


def rc_of(base):
    text = read_text(base + ".rc")
    return int(text) if text and text.strip().lstrip("-").isdigit() else None


def machine():
    model = "unknown CPU"
    for line in (read_text("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = None
    m = re.search(r"MemTotal:\s+(\d+) kB", read_text("/proc/meminfo") or "")
    if m:
        mem = int(m.group(1)) / 1024.0 / 1024.0
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "ram_gib": mem,
        "kernel": platform.release(),
    }


def fmt(v, spec=".3f", na="n/a"):
    return na if v is None else format(v, spec)


def count_labels(path):
    fams, subs, n = set(), set(), 0
    try:
        with open(path) as f:
            r = csv.reader(f)
            next(r)
            for row in r:
                if len(row) >= 3:
                    n += 1
                    fams.add(row[1])
                    subs.add((row[1], row[2]))
    except (OSError, StopIteration):
        pass
    return n, len(fams), len(subs)


def mamori_row(work, name, label):
    d = os.path.join(work, "runs", name)
    stats = load_json(os.path.join(d, "out", "stats.json")) or {}
    score = load_json(os.path.join(d, "score.json")) or {}
    clusters = load_json(os.path.join(d, "out", "clusters.json")) or {}
    rss, wall = time_v(os.path.join(d, "classify.time"))
    rc = rc_of(os.path.join(d, "classify"))
    stages = {s.get("name"): s for s in stats.get("stages", []) if isinstance(s, dict)}
    n, _, _ = count_labels(os.path.join(d, "labels.csv"))
    return {
        "label": label,
        "samples": stats.get("samples", n or None),
        "ok": stats.get("ok"),
        "rc": rc,
        "wall": stats.get("wall_s", wall),
        "rss": rss if rss is not None else stats.get("peak_rss_mb"),
        "stages": {k: (v.get("wall_s"), v.get("peak_rss_mb")) for k, v in stages.items()},
        "threshold": clusters.get("threshold"),
        "family": score.get("family"),
        "subfamily": score.get("subfamily"),
        "pairs": (stats.get("candidate_pairs"), stats.get("exact_pairs"), stats.get("below_pairs")),
        "unique": stats.get("unique_sequences"),
    }


def baseline_row(work, method, label):
    base = os.path.join(work, "baseline-" + method)
    res = load_json(base + ".json")
    rss, wall = time_v(base + ".time")
    if res is None:
        return {"label": label, "missing": True, "rc": rc_of(base)}
    return {
        "label": label,
        "samples": res.get("samples"),
        "rc": rc_of(base),
        "wall": res.get("wall_s", wall),
        "rss": rss if rss is not None else res.get("peak_rss_mb"),
        "stages": {
            "ingest": (res.get("hash_s"), None),
            "similarity": (res.get("compare_s"), None),
            "cluster": (res.get("cluster_s", 0) + res.get("sweep_s", 0), None),
        },
        "threshold": res.get("threshold"),
        "family": res.get("family"),
        "subfamily": res.get("subfamily"),
    }


def lsh_recall(work):
    """Pairs with S >= threshold found by --candidates all but missing from lsh."""
    def pairs(path):
        out = {}
        try:
            with open(path) as f:
                r = csv.reader(f)
                for row in r:
                    if len(row) != 3 or row[0] == "sha_a":
                        continue
                    try:
                        s = float(row[2])
                    except ValueError:
                        continue
                    out[tuple(sorted(row[:2]))] = s
        except OSError:
            return None
        return out

    p_all = pairs(os.path.join(work, "runs", "recall-all.pairs.csv"))
    p_lsh = pairs(os.path.join(work, "runs", "recall-lsh.pairs.csv"))
    clusters = load_json(os.path.join(work, "runs", "recall-all", "out", "clusters.json")) or {}
    stats = {
        m: load_json(os.path.join(work, "runs", "recall-" + m, "out", "stats.json")) or {} for m in ("all", "lsh")
    }
    n, _, _ = count_labels(os.path.join(work, "runs", "recall-all", "labels.csv"))
    t = clusters.get("threshold")
    if p_all is None or p_lsh is None or t is None:
        return {"samples": n, "available": False}
    above = [k for k, s in p_all.items() if s >= t - 1e-12 and k[0] != k[1]]
    missed = [k for k in above if k not in p_lsh]
    return {
        "available": True,
        "samples": n,
        "threshold": t,
        "above": len(above),
        "missed": len(missed),
        "recall": 1.0 - len(missed) / len(above) if above else 1.0,
        "cand_all": stats["all"].get("candidate_pairs"),
        "cand_lsh": stats["lsh"].get("candidate_pairs"),
        "wall_all": stats["all"].get("wall_s"),
        "wall_lsh": stats["lsh"].get("wall_s"),
    }


def scores_cells(s):
    if not s:
        return ["n/a"] * 4
    return [fmt(s.get("precision")), fmt(s.get("recall")), fmt(s.get("f1")), fmt(s.get("ari"))]


def stage_cell(row, name):
    st = row.get("stages", {}).get(name)
    if not st or st[0] is None:
        return "-"
    return fmt(st[0], ".1f") + "s" + ("" if st[1] is None else " " + fmt(st[1], ".0f") + "M")


def table(rows):
    head = ["run", "samples", "threshold", "wall s", "peak MB"] + STAGES + [
        "fam P", "fam R", "fam F1", "fam ARI", "sub P", "sub R", "sub F1", "sub ARI"]
    body = []
    for r in rows:
        if r.get("missing"):
            body.append([r["label"], "not run"] + [""] * (len(head) - 2))
            continue
        samples = "n/a" if r.get("samples") is None else str(r["samples"])
        if r.get("ok") is not None and r.get("samples") is not None and r["ok"] != r["samples"]:
            samples += " (%d ok)" % r["ok"]
        rc = r.get("rc")
        wall = fmt(r.get("wall"), ".1f")
        if rc not in (None, 0, 4):
            wall += " (exit %d)" % rc
        body.append([r["label"], samples, fmt(r.get("threshold"), "g"), wall, fmt(r.get("rss"), ".0f")]
                    + [stage_cell(r, s) for s in STAGES]
                    + scores_cells(r.get("family")) + scores_cells(r.get("subfamily")))
    return head, body


def render_text(head, body):
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(head), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    return "\n".join(out)


def render_md(head, body):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in b) + " |" for b in body]
    return "\n".join(out)


def md_blocks(text):
    """Blank lines around tables, so a caption line does not swallow one."""
    out = []
    for line in text.splitlines():
        is_row = line.startswith("|")
        if out and out[-1] and out[-1].startswith("|") != is_row:
            out.append("")
        out.append(line)
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--corpus", required=True, help="the corpus's name as shown")
    ap.add_argument("--labels", help="labels.csv (default CORPUS/labels.csv)")
    ap.add_argument("--command", default="make bench")
    ap.add_argument("--doc")
    a = ap.parse_args()

    n, n_fam, n_sub = count_labels(a.labels or os.path.join(a.corpus, "labels.csv"))
    rows = [
        mamori_row(a.work, "quarter", "mamori 1/4"),
        mamori_row(a.work, "half", "mamori 1/2"),
        mamori_row(a.work, "all", "mamori all"),
        mamori_row(a.work, "rerun", "mamori all, cached"),
        baseline_row(a.work, "ssdeep", "ssdeep (best t)"),
        baseline_row(a.work, "tlsh", "TLSH (best t)"),
    ]
    head, body = table(rows)
    rec = lsh_recall(a.work)
    lcs = (read_text(os.path.join(a.work, "lcs_bench.txt")) or "").strip()
    m = machine()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ram = "n/a" if m["ram_gib"] is None else "%.0f GiB" % m["ram_gib"]
    machine_line = "%s, %s cores, %s RAM, Linux %s" % (m["cpu"], m["nproc"], ram, m["kernel"])
    corpus_line = "%s: %d samples, %d families, %d subfamilies" % (a.corpus, n, n_fam, n_sub)

    notes = []
    if rec.get("available"):
        notes.append(
            "LSH candidate recall on %d samples: %d of %d pairs with S >= %g found (recall %.4f, %d missed); "
            "candidate pairs %s with lsh vs %s exhaustive; wall %s s vs %s s." % (
                rec["samples"], rec["above"] - rec["missed"], rec["above"], rec["threshold"], rec["recall"],
                rec["missed"], rec["cand_lsh"], rec["cand_all"], fmt(rec["wall_lsh"], ".1f"),
                fmt(rec["wall_all"], ".1f")))
    else:
        notes.append("LSH candidate recall: not measured (the --candidates all/lsh runs gave no pair lists).")
    full = next((r for r in rows if r["label"] == "mamori all"), {})
    if full.get("pairs") and full["pairs"][0] is not None:
        notes.append("Full run: %s unique token sequences, %s candidate pairs, %s compared exactly, %s cut off "
                     "below the floor." % (full.get("unique"), *full["pairs"]))
    baseline_desc = ("ssdeep: distance 1 - score/100; TLSH: min(d, 300)/300; both clustered with the same "
                     "average-linkage HAC as mamori, cut swept over [0, 0.99] in steps of 0.01, reported at the cut with "
                     "the best family F1 (subfamily scores at that same cut; threshold column = distance).")

    text = [
        "mamori benchmark -- " + now,
        "machine: " + machine_line,
        "corpus:  " + corpus_line,
        "",
        render_text(head, body),
        "",
    ] + notes + ["", baseline_desc]
    if lcs:
        text += ["", "exact-LCS kernel (lcs_bench):", lcs]
    print("\n".join(text))

    if a.doc:
        md = [
            BEGIN,
            "",
            "Measured on %s by `%s`." % (now, a.command),
            "",
            "- Machine: " + machine_line,
            "- Corpus: " + corpus_line,
            "",
            render_md(head, body),
            "",
            "Stage cells are wall seconds and peak RSS (MB) at the end of the stage, from `stats.json`; "
            "\"peak MB\" is the whole process's maximum RSS from `/usr/bin/time -v`. mamori's threshold is "
            "a similarity; the baselines' is a distance. Failed samples count as singleton clusters.",
            "",
        ] + ["- " + x for x in notes] + ["- " + baseline_desc]
        if lcs:
            # lcs_bench prints Markdown tables of its own.
            md += ["", "Exact-LCS kernel and synthetic LSH recall (`build/bench/lcs_bench`):", "", md_blocks(lcs)]
        md += ["", END]
        block = "\n".join(md)
        try:
            with open(a.doc) as f:
                doc = f.read()
        except FileNotFoundError:
            doc = "# Benchmarks\n\n"
        if BEGIN in doc and END in doc and doc.index(BEGIN) < doc.index(END):
            doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
        else:
            doc = doc.rstrip("\n") + "\n\n" + block + "\n"
        tmp = a.doc + ".tmp"
        with open(tmp, "w") as f:
            f.write(doc)
        os.replace(tmp, a.doc)
        print("\nwritten to " + a.doc, file=sys.stderr)


if __name__ == "__main__":
    main()
