#!/usr/bin/env python3
"""Tables of the unpacking benchmark (bench/unpack/run.sh) from its work folder.

usage: bench/unpack/report.py WORK
Prints Markdown: OEP/dump/similarity/time per packer and arch, family F1 of the
corpus with packed variants (unpacking on/off, ssdeep, TLSH), emulation speed.
"""
import json
import os
import statistics
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt(v, digits=3):
    return "-" if v is None else f"{v:.{digits}f}"


def main():
    work = sys.argv[1]
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(work, "packed.tsv"))]
    groups = {}
    all_times, all_sims, fails = [], [], []
    emu_insns, emu_ms = 0, 0.0
    for sha, packer, arch, _path, _orig in rows:
        g = groups.setdefault((packer, arch), {"n": 0, "oep": 0, "dump": 0, "sims": [], "ms": [],
                                               "status": {}})
        g["n"] += 1
        rep = load(os.path.join(work, "reports", sha + ".json")) or {}
        status = rep.get("status", "none")
        g["status"][status] = g["status"].get(status, 0) + 1
        try:
            rc, ms = open(os.path.join(work, "reports", sha + ".rc")).read().split()
            g["ms"].append(int(ms))
            all_times.append(int(ms))
        except (OSError, ValueError):
            pass
        # Instructions emulated: the run, plus the replay up to the OEP when
        # the dump was taken there; over the worker's whole wall time.
        insns = (rep.get("emu") or {}).get("insns")
        if insns and rep.get("timing_ms"):
            layers = rep.get("layers") or []
            k = rep.get("oep_layer")
            if (rep.get("dump") or {}).get("at") == "oep" and isinstance(k, int) and k < len(layers):
                insns += layers[k].get("insns", 0)
            emu_insns += insns
            emu_ms += rep["timing_ms"]
        orig = load(os.path.join(work, "info", sha + ".orig.json")) or {}
        dump = load(os.path.join(work, "info", sha + ".dump.json"))
        ok_oep = False
        if dump is not None:
            g["dump"] += 1
            if orig.get("entry") is not None and dump.get("entry") is not None:
                ok_oep = dump["entry"] - dump["image_base"] == orig["entry"] - orig["image_base"]
        g["oep"] += ok_oep
        if not ok_oep:
            fails.append((packer, arch, sha[:12], status, (rep.get("emu") or {}).get("fault")
                          or ",".join(rep.get("limits_hit") or []) or ""))
        cmp = load(os.path.join(work, "compare", sha + ".json")) or {}
        if cmp.get("similarity") is not None:
            g["sims"].append(cmp["similarity"])
            all_sims.append(cmp["similarity"])

    out = []
    out.append("### Unpacking the packed corpus, per packer and arch\n")
    out.append("OEP found = the dump's entry RVA equals the original's; similarity = `mamori compare` "
               "of the dump with its original (token LCS); time = wall clock of `mamori unpack` "
               "per sample (worker process, emulation, replay, dump, report).\n")
    out.append("| packer | arch | samples | OEP found | dump parsed | similarity mean (min) | "
               "median time (ms) | max time (ms) | statuses |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
    tot = {"n": 0, "oep": 0, "dump": 0}
    for (packer, arch), g in sorted(groups.items()):
        for k in tot:
            tot[k] += g[k]
        sims = g["sims"]
        st = ", ".join(f"{k} {v}" for k, v in sorted(g["status"].items()))
        out.append(f"| {packer} | {arch} | {g['n']} | {100.0 * g['oep'] / g['n']:.1f}% | "
                   f"{100.0 * g['dump'] / g['n']:.1f}% | "
                   f"{fmt(statistics.mean(sims) if sims else None)} ({fmt(min(sims) if sims else None)}) | "
                   f"{statistics.median(g['ms']) if g['ms'] else '-'} | {max(g['ms']) if g['ms'] else '-'} | {st} |")
    if tot["n"]:
        out.append(f"| **all** | | {tot['n']} | **{100.0 * tot['oep'] / tot['n']:.1f}%** | "
                   f"{100.0 * tot['dump'] / tot['n']:.1f}% | "
                   f"**{fmt(statistics.mean(all_sims) if all_sims else None)}** "
                   f"({fmt(min(all_sims) if all_sims else None)}) | "
                   f"**{statistics.median(all_times) if all_times else '-'}** | "
                   f"{max(all_times) if all_times else '-'} | |")
    if fails:
        out.append("\nSamples without the right OEP (first 10): " + "; ".join(
            f"{p}/{a} {s} ({st}{': ' + why if why else ''})" for p, a, s, st, why in fails[:10]))

    out.append("\n### Family F1 on the corpus with its packed variants\n")
    out.append("| method | samples | P | R | F1 | ARI | wall (s) | code from dumps |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, label in (("auto", "mamori, unpacking on (`--unpack auto`)"),
                        ("never", "mamori, unpacking off (`--unpack never`)")):
        d = os.path.join(work, "classify-" + mode)
        sc = (load(os.path.join(d, "score.json")) or {}).get("family") or {}
        stats = load(os.path.join(d, "out", "stats.json")) or {}
        try:
            secs = open(os.path.join(d, "seconds")).read().strip()
        except OSError:
            secs = "-"
        up = stats.get("unpack") or {}
        unpacked = f"{up['code_unpacked']} of {up['tried']} tried" if "code_unpacked" in up else "-"
        out.append(f"| {label} | {stats.get('samples', '-')} | {fmt(sc.get('precision'))} | "
                   f"{fmt(sc.get('recall'))} | **{fmt(sc.get('f1'))}** | {fmt(sc.get('ari'))} | {secs} | "
                   f"{unpacked} |")
    for method, label in (("ssdeep", "ssdeep (best threshold)"), ("tlsh", "TLSH (best threshold)")):
        res = load(os.path.join(work, f"baseline-{method}.json")) or {}
        sc = res.get("family") or {}
        wall = res.get("wall_s")
        out.append(f"| {label} | {res.get('samples', '-')} | {fmt(sc.get('precision'))} | "
                   f"{fmt(sc.get('recall'))} | {fmt(sc.get('f1'))} | {fmt(sc.get('ari'))} | "
                   f"{fmt(wall, 1) if wall is not None else '-'} | - |")

    if emu_ms > 0:
        out.append(f"\nOn the packed corpus: {emu_insns / 1e6:.0f} M instructions emulated in "
                   f"{emu_ms / 1000:.1f} s of unpack time = **{emu_insns / emu_ms / 1000:.1f} M instructions/s** "
                   "end to end (worker start, loading, API stubs, replay to the OEP, dump and report included).")
    speed = load(os.path.join(work, "speed.json"))
    if speed:
        out.append("\n### Emulation speed (million instructions per second, best of 3)\n")
        out.append("| workload | arch | Unicorn alone | Unicorn + count hook | mamori, tracking on | "
                   "mamori / Unicorn |")
        out.append("|---|---|---:|---:|---:|---:|")
        for s in speed:
            out.append(f"| {s['workload']} | {s['arch']} | {s['unicorn_mips']:.1f} | "
                       f"{s['unicorn_count_mips']:.1f} | **{s['mamori_mips']:.1f}** | "
                       f"{s['mamori_mips'] / s['unicorn_mips']:.2f} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
