"""Tables, CSV, charts and docs/benchmarks.md for bench/run.

Everything here works from the measurements bench/run collected; nothing is
run except gnuplot for the charts. Standard library only.
"""

import csv
import math
import os
import re
import shutil
import subprocess

ANALYSIS_BEGIN = "<!-- analysis:begin -->"
ANALYSIS_END = "<!-- analysis:end -->"

TIME_TARGET = 0.95   # geomean wall time, JSMalloc / best peer
RSS_TARGET = 1.00    # geomean peak RSS, JSMalloc / best peer
COVERAGE_TARGET = 0.95
# Heap sampling at its default interval: geomean wall time with sampling on /
# off (jsmalloc / jsmalloc-nosample) at most this.
SAMPLING_TARGET = 1.01
SAMPLING_OFF = "jsmalloc-nosample"
SAMPLING_64K = "jsmalloc-sample64k"
# NUMA-aware mode, on the machine's topology and on an injected two-node one,
# against jsmalloc (NUMA off). Within this band of 1 (geomean wall time) the
# mode is said to cost no measurable time.
NUMA_ON = "jsmalloc-numa"
NUMA_2 = "jsmalloc-numa2"
NUMA_NOISE = 0.02
STEADY_WORKLOADS = ("steady_churn",)

WORKLOAD_NOTES = {
    "larson": "server-like churn, 4 threads, batches of blocks freed by another thread",
    "xmalloc": "producer/consumer: every block freed by another thread",
    "cache_scratch": "false sharing (passive/active) and list locality, 2 threads",
    "fragmentation": "4M small objects, 90% freed scattered, then larger objects",
    "steady_churn": "200-400 MiB working set replaced in waves, 2 threads",
    "large_churn": "64 KiB - 64 MiB blocks, every page written, 3 threads",
    "realloc_builder": "interleaved realloc / std::string / std::vector growth",
    "symbolic": "binary trees and a hash-consed expression simplifier (new/delete)",
    "alloc_test": "thread-local churn on 1, 2 then 4 threads",
}


def geomean(values):
    vals = [v for v in values if v is not None and v > 0]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def fnum(v, fmt):
    return "n/a" if v is None or v == "" else format(v, fmt)


def md_table(headers, rows, right_from=1):
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" if i < right_from else "---:" for i in range(len(headers))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def text_table(headers, rows, right_from=1):
    cols = list(zip(*([headers] + [[str(c) for c in r] for r in rows])))
    widths = [max(len(c) for c in col) for col in cols]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i < right_from else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def write_csv(path, rows, med, args):
    keys = ["workload", "allocator", "run", "order", "wall_s", "user_s", "sys_s", "cpu_s",
            "maxrss_kib", "ru_maxrss_kib", "checksum", "exit", "thp_kib", "anon_kib", "thp_cov",
            "thp_avg_cov", "failed"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys + ["scale"])

        def cell(v):
            if isinstance(v, float):
                return f"{v:.4f}"
            return v

        for r in rows:
            w.writerow([cell(r.get(k, "")) for k in keys] + [f"{args.scale:g}"])
        for (wl, a), m in med.items():
            vals = dict(m, workload=wl, allocator=a, run="median", order="", exit=0)
            w.writerow([cell(vals.get(k, "")) for k in keys] + [f"{args.scale:g}"])


class Report:
    def __init__(self, run, machine, rows, med, micro, callgrind, peers):
        self.run = run
        self.machine = machine
        self.rows = rows
        self.med = med
        self.micro = micro
        self.callgrind = callgrind
        self.allocs = run["allocs"]
        self.workloads = run["workloads"]
        self.peers = [p for p in peers if p in self.allocs]
        self.has_js = "jsmalloc" in self.allocs

    # ------------------------------------------------------------ figures --

    def value(self, wl, alloc, key):
        m = self.med.get((wl, alloc))
        if m is None or m.get(key, "") == "":
            return None
        return float(m[key])

    def best_peer(self, wl, key):
        best = None
        for p in self.peers:
            v = self.value(wl, p, key)
            if v is not None and (best is None or v < best[1]):
                best = (p, v)
        return best

    def ratio(self, wl, key, alloc="jsmalloc"):
        best = self.best_peer(wl, key)
        v = self.value(wl, alloc, key)
        if best is None or v is None or best[1] <= 0:
            return None
        return v / best[1]

    def geo_ratio(self, key, alloc="jsmalloc"):
        return geomean([self.ratio(wl, key, alloc) for wl in self.workloads])

    def metric_table(self, key, scale, fmt):
        """Rows of a per-workload table of one metric (medians), with the best
        peer, the JSMalloc ratio and a geomean row."""
        headers = ["workload"] + self.allocs + ["best peer", "jsmalloc / best"]
        rows = []
        for wl in self.workloads:
            row = [wl]
            for a in self.allocs:
                v = self.value(wl, a, key)
                row.append(fnum(None if v is None else v / scale, fmt))
            best = self.best_peer(wl, key)
            row.append(best[0] if best else "n/a")
            row.append(fnum(self.ratio(wl, key), ".3f"))
            rows.append(row)
        geo = ["geomean vs best peer"]
        for a in self.allocs:
            geo.append(fnum(self.geo_ratio(key, a), ".3f"))
        geo += ["", fnum(self.geo_ratio(key), ".3f")]
        rows.append(geo)
        return headers, rows

    # ------------------------------------------------------- sampling cost --

    def has_sampling(self):
        return SAMPLING_OFF in self.allocs and ("jsmalloc" in self.allocs or SAMPLING_64K in self.allocs)

    def sampling_ratio(self, wl, alloc, key):
        v, off = self.value(wl, alloc, key), self.value(wl, SAMPLING_OFF, key)
        if v is None or off is None or off <= 0:
            return None
        return v / off

    def sampling_geo(self, alloc, key):
        return geomean([self.sampling_ratio(wl, alloc, key) for wl in self.workloads])

    def sampling_table(self):
        """Wall and CPU time with sampling off, at the default interval (2 MiB)
        and at 64 KiB, and the ratios to off; a geomean row."""
        headers = ["workload", "off: wall s", "2 MiB: wall s", "64 KiB: wall s",
                   "2 MiB / off (wall)", "64 KiB / off (wall)", "2 MiB / off (cpu)", "64 KiB / off (cpu)"]
        rows = []
        for wl in self.workloads:
            row = [wl]
            for a in (SAMPLING_OFF, "jsmalloc", SAMPLING_64K):
                row.append(fnum(self.value(wl, a, "wall_s"), ".2f"))
            for key in ("wall_s", "cpu_s"):
                for a in ("jsmalloc", SAMPLING_64K):
                    row.append(fnum(self.sampling_ratio(wl, a, key), ".3f"))
            rows.append(row)
        geo = ["geomean", "", "", ""]
        for key in ("wall_s", "cpu_s"):
            for a in ("jsmalloc", SAMPLING_64K):
                geo.append(fnum(self.sampling_geo(a, key), ".3f"))
        rows.append(geo)
        return headers, rows

    # ----------------------------------------------------- NUMA-aware cost --

    def numa_modes(self):
        return [a for a in (NUMA_ON, NUMA_2) if a in self.allocs]

    def has_numa(self):
        return "jsmalloc" in self.allocs and bool(self.numa_modes())

    def numa_ratio(self, wl, alloc, key):
        v, off = self.value(wl, alloc, key), self.value(wl, "jsmalloc", key)
        if v is None or off is None or off <= 0:
            return None
        return v / off

    def numa_geo(self, alloc, key):
        return geomean([self.numa_ratio(wl, alloc, key) for wl in self.workloads])

    def numa_table(self):
        """Wall time and peak RSS of jsmalloc (NUMA off) and the ratios of each
        NUMA configuration run to it; a geomean row."""
        modes = self.numa_modes()
        headers = ["workload", "off: wall s", "off: peak RSS MiB"]
        headers += [f"{a} / off (wall)" for a in modes] + [f"{a} / off (RSS)" for a in modes]
        rows = []
        for wl in self.workloads:
            rss = self.value(wl, "jsmalloc", "maxrss_kib")
            row = [wl, fnum(self.value(wl, "jsmalloc", "wall_s"), ".2f"),
                   fnum(None if rss is None else rss / 1024, ".1f")]
            for key in ("wall_s", "maxrss_kib"):
                for a in modes:
                    row.append(fnum(self.numa_ratio(wl, a, key), ".3f"))
            rows.append(row)
        geo = ["geomean", "", ""]
        for key in ("wall_s", "maxrss_kib"):
            for a in modes:
                geo.append(fnum(self.numa_geo(a, key), ".3f"))
        rows.append(geo)
        return headers, rows

    def numa_callgrind(self):
        """{config: {"hot", "mixed"}} of callgrind instructions per pair for
        jsmalloc and each NUMA configuration measured, or {}."""
        cg = self.callgrind or {}
        base = (cg.get("pairs") or {}).get("jsmalloc")
        numa = cg.get("numa") or {}
        if not base or base.get("hot") is None or not numa:
            return {}
        out = {"jsmalloc": base}
        for a in (NUMA_ON, NUMA_2):
            if a in numa:
                out[a] = numa[a]
        return out

    def numa_callgrind_table(self):
        cg = self.numa_callgrind()
        base = cg["jsmalloc"]
        headers = ["configuration", "hot 64 B (instr/pair)", "mixed (instr/pair)",
                   "hot: difference", "mixed: difference"]
        rows = []
        for a, v in cg.items():
            row = [a, fnum(v.get("hot"), ".1f"), fnum(v.get("mixed"), ".1f")]
            for key in ("hot", "mixed"):
                if a == "jsmalloc":
                    row.append("")
                elif v.get(key) is None or base.get(key) is None:
                    row.append("n/a")
                else:
                    row.append(f"{v[key] - base[key]:+.1f}")
            rows.append(row)
        return headers, rows

    @staticmethod
    def _band(g):
        """How a geomean ratio to NUMA off reads against the noise band."""
        if g is None:
            return "not measured"
        pct = 100 * (g - 1)
        if abs(g - 1) <= NUMA_NOISE:
            return f"{g:.3f} ({pct:+.1f}%, within {100 * NUMA_NOISE:.0f}%)"
        return f"{g:.3f} ({pct:+.1f}%, outside {100 * NUMA_NOISE:.0f}%)"

    def numa_sentence(self):
        """What the NUMA figures show, from the data."""
        parts = []
        nodes = self.machine.get("numa_nodes")
        where = (f"this machine ({nodes} NUMA node{'s' if nodes != 1 else ''} online)"
                 if nodes else "this machine")
        if NUMA_ON in self.allocs:
            gt, gr = self.numa_geo(NUMA_ON, "wall_s"), self.numa_geo(NUMA_ON, "maxrss_kib")
            per = [(wl, self.numa_ratio(wl, NUMA_ON, "wall_s")) for wl in self.workloads]
            per = [(wl, r) for wl, r in per if r is not None]
            if gt is None or not per:
                parts.append(f"`{NUMA_ON}` has no workload compared with `jsmalloc`.")
            else:
                lo, hi = min(per, key=lambda x: x[1]), max(per, key=lambda x: x[1])
                spread = (f"per-workload ratios run from {lo[1]:.3f} ({lo[0]}) to "
                          f"{hi[1]:.3f} ({hi[0]})")
                if abs(gt - 1) <= NUMA_NOISE:
                    verdict = (f"NUMA-aware mode costs no measurable wall time on {where} "
                               f"({spread})")
                elif lo[1] < 1 - NUMA_NOISE and hi[1] > 1 + NUMA_NOISE:
                    verdict = (f"{spread}, more than {100 * NUMA_NOISE:.0f}% off 1 in both "
                               f"directions, so run-to-run noise on {where} exceeds "
                               f"{100 * NUMA_NOISE:.0f}% and these wall times can neither show "
                               f"nor rule out a cost of that size")
                elif gt > 1:
                    verdict = (f"NUMA-aware mode has a measurable wall-time cost on {where} "
                               f"({spread})")
                else:
                    verdict = (f"faster than NUMA off on {where} ({spread}), which the mode is "
                               f"not designed to be: read it as noise")
                parts.append(f"Geomean wall time `{NUMA_ON}` / `jsmalloc` over {len(per)} "
                             f"workload(s) is {self._band(gt)}: {verdict}. Geomean peak RSS "
                             f"ratio: {self._band(gr)}.")
        else:
            parts.append(f"`{NUMA_ON}` was not run.")
        if NUMA_2 in self.allocs:
            gt, gr = self.numa_geo(NUMA_2, "wall_s"), self.numa_geo(NUMA_2, "maxrss_kib")
            parts.append(f"With the injected two-node topology (`{NUMA_2}`: two partitions, frees "
                         f"check the home node) the geomean wall-time ratio is {self._band(gt)} "
                         f"and the peak RSS ratio {self._band(gr)}.")
        cg = self.numa_callgrind()
        if cg:
            base = cg["jsmalloc"]["hot"]
            diffs = [f"`{a}` {v['hot'] - base:+.1f} ({100 * (v['hot'] / base - 1):+.1f}%)"
                     for a, v in cg.items() if a != "jsmalloc" and v.get("hot") is not None]
            if diffs:
                parts.append(f"Callgrind, hot malloc(64)+free pair against `jsmalloc`'s {base:.1f} "
                             f"instructions: {', '.join(diffs)}.")
            on = cg.get(NUMA_ON, {}).get("hot")
            if on is not None:
                same = abs(on / base - 1) <= NUMA_NOISE
                parts.append(f"The fast path in `{NUMA_ON}` on {where} is "
                             + (f"the same within {100 * NUMA_NOISE:.0f}% as with NUMA off."
                                if same else
                                f"{100 * (on / base - 1):+.1f}% from NUMA off: a cost in "
                                f"instructions."))
        if self.run["runs"] < 3:
            parts.append(f"Only {self.run['runs']} run(s) per configuration: single-digit percent "
                         f"differences in wall time are within run-to-run noise.")
        return " ".join(parts)

    def has_coverage(self):
        return any(wl in self.workloads for wl in ("steady_churn", "fragmentation"))

    def coverage_table(self):
        headers = ["allocator", "steady_churn: THP / anon (end)", "steady_churn: THP MiB / anon MiB",
                   "steady_churn: mean of 0.5 s samples", "fragmentation: THP / anon (end)"]
        rows = []
        for a in self.allocs:
            cov = self.value("steady_churn", a, "thp_cov")
            thp = self.value("steady_churn", a, "thp_kib")
            anon = self.value("steady_churn", a, "anon_kib")
            avg = self.value("steady_churn", a, "thp_avg_cov")
            frag = self.value("fragmentation", a, "thp_cov")
            rows.append([a, fnum(None if cov is None else 100 * cov, ".1f") + ("%" if cov is not None else ""),
                         f"{thp / 1024:.0f} / {anon / 1024:.0f}" if thp is not None and anon else "n/a",
                         fnum(None if avg is None else 100 * avg, ".1f") + ("%" if avg is not None else ""),
                         fnum(None if frag is None else 100 * frag, ".1f") + ("%" if frag is not None else "")])
        return headers, rows

    def micro_table(self):
        if not self.micro:
            return None
        ns = self.micro["ns"]
        allocs = [a for a in self.allocs if a in ns]
        headers = ["benchmark (ns per item)"] + allocs + ["best peer", "jsmalloc / best"]
        rows = []
        ratios = {a: [] for a in allocs}
        js_ratios = []
        for b in self.micro["names"]:
            row = [b]
            for a in allocs:
                row.append(fnum(ns[a].get(b), ".1f"))
            peers = [(p, ns[p][b]) for p in self.peers if p in ns and b in ns[p]]
            best = min(peers, key=lambda x: x[1]) if peers else None
            row.append(best[0] if best else "n/a")
            js = ns.get("jsmalloc", {}).get(b)
            r = js / best[1] if best and js is not None and best[1] > 0 else None
            row.append(fnum(r, ".3f"))
            if r is not None:
                js_ratios.append(r)
            for a in allocs:
                if best and b in ns[a] and best[1] > 0:
                    ratios[a].append(ns[a][b] / best[1])
            rows.append(row)
        rows.append(["geomean vs best peer"] + [fnum(geomean(ratios[a]), ".3f") for a in allocs]
                    + ["", fnum(geomean(js_ratios), ".3f")])
        return headers, rows

    # ------------------------------------------------------------ targets --

    def targets(self):
        """[(name, target text, figure text, met: True/False/None)]"""
        out = []
        t = self.geo_ratio("wall_s")
        out.append(("wall time", f"geomean JSMalloc / best peer <= {TIME_TARGET:.2f}",
                    f"{fnum(t, '.3f')} over {len(self.workloads)} workloads",
                    None if t is None else t <= TIME_TARGET))
        r = self.geo_ratio("maxrss_kib")
        out.append(("peak RSS", f"geomean JSMalloc / best peer <= {RSS_TARGET:.2f}",
                    f"{fnum(r, '.3f')} over {len(self.workloads)} workloads",
                    None if r is None else r <= RSS_TARGET))
        per_pair = (self.callgrind or {}).get("per_pair") or {}
        js = per_pair.get("jsmalloc")
        peers = [(p, per_pair[p]) for p in self.peers if p in per_pair]
        if js is not None and peers:
            best = min(peers, key=lambda x: x[1])
            out.append(("instructions per pair", "JSMalloc <= fewest peer (callgrind, malloc(64)+free)",
                        f"jsmalloc {js:.1f} vs {best[0]} {best[1]:.1f}", js <= best[1]))
        else:
            out.append(("instructions per pair", "JSMalloc <= fewest peer (callgrind, malloc(64)+free)",
                        "not measured in this run", None))
        if self.has_sampling():
            g = self.sampling_geo("jsmalloc", "wall_s")
            g64 = self.sampling_geo(SAMPLING_64K, "wall_s")
            out.append(("sampling overhead",
                        f"geomean wall time, sampling at 2 MiB / off <= {SAMPLING_TARGET:.2f}",
                        f"{fnum(g, '.3f')} (64 KiB: {fnum(g64, '.3f')}) over {len(self.workloads)} workloads",
                        None if g is None else g <= SAMPLING_TARGET))
        for wl in STEADY_WORKLOADS:
            c = self.value(wl, "jsmalloc", "thp_cov")
            pc = [(p, self.value(wl, p, "thp_cov")) for p in self.peers]
            pc = [(p, v) for p, v in pc if v is not None]
            if c is None or not pc:
                out.append((f"hugepage coverage ({wl})", f">= {100 * COVERAGE_TARGET:.0f}% and above every peer",
                            "not measured in this run", None))
                continue
            best = max(pc, key=lambda x: x[1])
            out.append((f"hugepage coverage ({wl})", f">= {100 * COVERAGE_TARGET:.0f}% and above every peer",
                        f"jsmalloc {100 * c:.1f}% vs best peer {best[0]} {100 * best[1]:.1f}%",
                        c >= COVERAGE_TARGET and c > best[1]))
        return out

    def misses_sentence(self):
        if not self.has_js or not self.peers:
            return ("No per-workload comparison: the run did not include both jsmalloc and at "
                    "least one peer allocator.")
        t_all = [(wl, self.ratio(wl, "wall_s")) for wl in self.workloads]
        t_miss = [(wl, r) for wl, r in t_all if r is not None and r > TIME_TARGET]
        r_all = [(wl, self.ratio(wl, "maxrss_kib")) for wl in self.workloads]
        r_miss = [(wl, r) for wl, r in r_all if r is not None and r > RSS_TARGET]
        no_data = [wl for wl, r in t_all if r is None]
        if len(no_data) == len(self.workloads):
            return "No workload has both a JSMalloc and a peer result in this run."

        def lst(items):
            return ", ".join(f"{wl} ({r:.2f})" for wl, r in items)

        parts = []
        if no_data:
            parts.append(f"No comparison for: {', '.join(no_data)} (failed or missing runs).")
        if t_miss:
            parts.append(f"Workloads missing the wall-time target (JSMalloc / best peer > "
                         f"{TIME_TARGET:.2f}): {lst(t_miss)}.")
        else:
            parts.append(f"Every compared workload meets the wall-time target (JSMalloc / best peer <= "
                         f"{TIME_TARGET:.2f}).")
        if r_miss:
            parts.append(f"Workloads missing the peak-RSS target (JSMalloc / best peer > "
                         f"{RSS_TARGET:.2f}): {lst(r_miss)}.")
        else:
            parts.append(f"Every compared workload meets the peak-RSS target (JSMalloc / best peer <= "
                         f"{RSS_TARGET:.2f}).")
        missed = [name for name, _, _, met in self.targets() if met is False]
        if missed:
            parts.append(f"Overall targets missed: {', '.join(missed)}.")
        else:
            parts.append("No overall target is missed among those measured.")
        return " ".join(parts)

    # --------------------------------------------------------------- text --

    def text_summary(self):
        run = self.run
        out = [f"bench/run {'--quick ' if run['quick'] else ''}results: {run['runs']} run(s) per "
               f"allocator, scale {run['scale']:g}, median shown; {run['date']}"]
        h, r = self.metric_table("wall_s", 1, ".2f")
        out += ["", "Wall time (s)", text_table(h, r)]
        h, r = self.metric_table("maxrss_kib", 1024, ".1f")
        out += ["", "Peak RSS (MiB)", text_table(h, r)]
        h, r = self.metric_table("cpu_s", 1, ".2f")
        out += ["", "User+sys CPU time (s)", text_table(h, r)]
        if self.has_coverage():
            h, r = self.coverage_table()
            out += ["", "Hugepage coverage (AnonHugePages / Anonymous)", text_table(h, r)]
        if self.has_sampling():
            h, r = self.sampling_table()
            out += ["", "Heap sampling overhead (JSMALLOC_SAMPLE_INTERVAL: off, 2 MiB, 64 KiB)",
                    text_table(h, r)]
        if self.has_numa():
            h, r = self.numa_table()
            out += ["", "NUMA-aware mode cost (ratios to jsmalloc, NUMA off)", text_table(h, r)]
            if self.numa_callgrind():
                out += ["", "NUMA-aware mode, callgrind instructions per pair",
                        text_table(*self.numa_callgrind_table())]
            out += ["", self.numa_sentence()]
        mt = self.micro_table()
        if mt:
            out += ["", "Micro-benchmarks (ns per item)", text_table(*mt)]
        if self.callgrind:
            out += ["", "Fast path (callgrind_pairs)", self.callgrind["text"]]
        out += ["", "Targets"]
        for name, target, fig, met in self.targets():
            status = "n/a" if met is None else ("MET" if met else "MISSED")
            out.append(f"  {status:7s} {name}: {target}: {fig}")
        out += ["", self.misses_sentence()]
        for e in run["errors"]:
            out.append(f"ERROR: {e}")
        return "\n".join(out)

    # ------------------------------------------------------------- charts --

    def charts(self, chart_dir, out_dir):
        """Draws the PNGs with gnuplot; returns {name: path} of those made."""
        if shutil.which("gnuplot") is None:
            return {}
        os.makedirs(chart_dir, exist_ok=True)
        data_dir = os.path.join(out_dir, "charts")
        os.makedirs(data_dir, exist_ok=True)
        made = {}
        if self.has_js and self.peers:
            dat = os.path.join(data_dir, "ratios.dat")
            with open(dat, "w") as f:
                f.write("# workload time_ratio rss_ratio\n")
                for wl in self.workloads:
                    t, r = self.ratio(wl, "wall_s"), self.ratio(wl, "maxrss_kib")
                    f.write(f"{wl} {t if t is not None else 'NaN'} {r if r is not None else 'NaN'}\n")
                t, r = self.geo_ratio("wall_s"), self.geo_ratio("maxrss_kib")
                f.write(f"geomean {t if t is not None else 'NaN'} {r if r is not None else 'NaN'}\n")
            png = os.path.join(chart_dir, "ratios.png")
            script = f"""
set terminal pngcairo size 1100,520 noenhanced font "sans,10"
set output '{png}'
set title 'JSMalloc / best peer (glibc, jemalloc, tcmalloc, mimalloc) per workload: below 1 is better'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:*]
set grid ytics
set xtics rotate by -25
set ylabel 'ratio'
set key top left
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 2 lc rgb '#333333'
set arrow from graph 0, first {TIME_TARGET} to graph 1, first {TIME_TARGET} nohead dt 3 lw 1 lc rgb '#1f77b4'
plot '{dat}' using 2:xtic(1) title 'wall time' lc rgb '#1f77b4', '' using 3 title 'peak RSS' lc rgb '#ff7f0e'
"""
            if self._gnuplot(script, data_dir, "ratios"):
                made["ratios"] = png
        if "glibc" in self.allocs and len(self.allocs) > 1:
            dat = os.path.join(data_dir, "times_vs_glibc.dat")
            with open(dat, "w") as f:
                f.write("# workload " + " ".join(self.allocs) + "\n")
                for wl in self.workloads:
                    g = self.value(wl, "glibc", "wall_s")
                    vals = []
                    for a in self.allocs:
                        v = self.value(wl, a, "wall_s")
                        vals.append(str(v / g) if v is not None and g else "NaN")
                    f.write(wl + " " + " ".join(vals) + "\n")
            png = os.path.join(chart_dir, "times_vs_glibc.png")
            cols = ", ".join([f"'{dat}' using 2:xtic(1) title '{self.allocs[0]}'"] +
                             [f"'' using {i + 2} title '{a}'" for i, a in enumerate(self.allocs) if i])
            script = f"""
set terminal pngcairo size 1200,520 noenhanced font "sans,10"
set output '{png}'
set title 'Wall time normalised to glibc (median of runs): below 1 is faster than glibc'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:*]
set grid ytics
set xtics rotate by -25
set key top left horizontal
set ylabel 'time / glibc time'
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1 lc rgb '#333333'
plot {cols}
"""
            if self._gnuplot(script, data_dir, "times_vs_glibc"):
                made["times_vs_glibc"] = png
        logs = self.rss_logs()
        if logs:
            png = os.path.join(chart_dir, "rss_over_time.png")
            plots = ", ".join(f"'{path}' using ($1/1000):($2/1024) with lines lw 2 title '{a}'"
                              for a, path in logs)
            script = f"""
set terminal pngcairo size 1100,520 noenhanced font "sans,10"
set output '{png}'
set title 'steady_churn: resident set size over time (sampled every 100 ms)'
set xlabel 'elapsed (s)'
set ylabel 'RSS (MiB)'
set grid
set key outside right
set xrange [0:*]
set yrange [0:*]
plot {plots}
"""
            if self._gnuplot(script, data_dir, "rss_over_time"):
                made["rss_over_time"] = png
        return made

    def rss_logs(self):
        """(allocator, path) of the steady_churn RSS trace of each allocator's
        last run."""
        out = []
        for a in self.allocs:
            rs = [r for r in self.rows if r["workload"] == "steady_churn" and r["allocator"] == a
                  and r.get("rss_log") and os.path.exists(r["rss_log"])
                  and os.path.getsize(r["rss_log"]) > 0]
            if rs:
                out.append((a, max(rs, key=lambda r: r["run"])["rss_log"]))
        return out

    @staticmethod
    def _gnuplot(script, data_dir, name):
        path = os.path.join(data_dir, f"{name}.gp")
        with open(path, "w") as f:
            f.write(script)
        r = subprocess.run(["gnuplot", path], text=True, capture_output=True)
        if r.returncode != 0:
            print(f"bench/run: WARNING: gnuplot {name}: {r.stderr.strip()[-400:]}")
            return False
        return True

    # ----------------------------------------------------------- markdown --

    def write_markdown(self, doc_path, charts, doc_dir):
        kept = ""
        if os.path.exists(doc_path):
            with open(doc_path, errors="replace") as f:
                old = f.read()
            m = re.search(re.escape(ANALYSIS_BEGIN) + r"\n?(.*?)" + re.escape(ANALYSIS_END), old, re.S)
            if m:
                kept = m.group(1).strip("\n")
        with open(doc_path, "w") as f:
            f.write(self.markdown(charts, doc_dir, kept))

    def markdown(self, charts, doc_dir, kept_analysis):
        run, mach = self.run, self.machine
        v = mach["versions"]
        L = []
        L.append("# Benchmarks")
        L.append("")
        L.append(f"Generated by `{run['command'].strip()}` on {run['date']} "
                 f"({'quick run' if run['quick'] else 'full run'}, {run['elapsed_s'] / 60:.1f} min in "
                 f"total). Everything above the analysis section is regenerated on each run; "
                 f"raw results are in `{run['out_dir']}/` (`bench/results/latest`).")
        L.append("")
        if run["errors"]:
            L.append("**Errors in this run:**")
            L.append("")
            for e in run["errors"]:
                L.append(f"- {e}")
            L.append("")
        L.append("## Machine")
        L.append("")
        L.append(md_table(["item", "value"], [
            ["CPUs (nproc)", mach["nproc"]],
            ["CPU model", mach["cpu"]],
            ["memory", mach["memory"]],
            ["kernel", mach["kernel"]],
            ["transparent hugepages", f"{mach['thp']}, defrag {mach['thp_defrag']}"],
            ["load average before / after the runs", f"{mach['load']} / {mach.get('load_end', '?')}"],
            ["date", run["date"]],
        ], right_from=2))
        L.append("")
        L.append("## Versions")
        L.append("")
        L.append(md_table(["allocator", "package / source", "version", "how it is selected"], [
            ["glibc", "libc6", v["libc6"], mach["preload"].get("glibc", "not run")],
            ["jemalloc", "libjemalloc2", v["libjemalloc2"], mach["preload"].get("jemalloc", "not run")],
            ["tcmalloc (gperftools, minimal)", "libtcmalloc-minimal4", v["libtcmalloc-minimal4"],
             mach["preload"].get("tcmalloc", "not run")],
            ["mimalloc", "libmimalloc2.0", v["libmimalloc2.0"], mach["preload"].get("mimalloc", "not run")],
            ["jsmalloc", "this repository (Release, build-bench)", v["jsmalloc"],
             mach["preload"].get("jsmalloc", "not run")],
            ["jsmalloc-perthread", "same library", "as jsmalloc", mach["preload"].get("jsmalloc-perthread", "not run")],
            ["jsmalloc-legacy", "same library", "as jsmalloc", mach["preload"].get("jsmalloc-legacy", "not run")],
            ["jsmalloc-nosample", "same library", "as jsmalloc", mach["preload"].get(SAMPLING_OFF, "not run")],
            ["jsmalloc-sample64k", "same library", "as jsmalloc", mach["preload"].get(SAMPLING_64K, "not run")],
            ["jsmalloc-numa", "same library", "as jsmalloc", mach["preload"].get(NUMA_ON, "not run")],
            ["jsmalloc-numa2", "same library", "as jsmalloc", mach["preload"].get(NUMA_2, "not run")],
        ], right_from=9))
        L.append("")
        if mach["js_heads"]:
            L.append("JSMalloc's own report (first line of `JSMALLOC_STATS_ON_EXIT`) per configuration:")
            L.append("")
            for a, head in mach["js_heads"].items():
                L.append(f"- `{a}`: {head}")
            L.append("")
        L.append("## Method")
        L.append("")
        L.append(
            f"- Workloads: the programs in `bench/workloads/` (`wl_<name>`), linked with no allocator; "
            f"each allocator is swapped in with `LD_PRELOAD` (glibc: none). Each run used "
            f"`--scale {run['scale']:g}`{' (`--quick`)' if run['quick'] else ''}.")
        L.append(
            f"- {run['runs']} run(s) per workload and allocator; the allocators alternate run by run "
            f"(round-robin: each repetition and workload starts with the next allocator), and the "
            f"tables show the median of the runs.")
        L.append(
            "- Wall time from the runner's monotonic clock around the child; user+sys CPU time from "
            "`wait4()` on the child (the runner blocks in `wait4` while a workload runs: no "
            "polling). Peak RSS is the workload's own `VmHWM` (`/proc/self/status`), read just "
            "before it exits: `ru_maxrss` is also recorded in results.csv but it is not used, because "
            "Linux carries the forked runner's high-water mark across `exec` into it (a floor of "
            "~20 MiB).")
        L.append(
            "- Every workload prints `checksum <hex>` computed from the contents it wrote and "
            "verified; the checksums must agree across allocators and runs (a mismatch is an error).")
        L.append(
            "- Preload check: before the runs, a child under each `LD_PRELOAD` must show the library "
            "in its `/proc/self/maps`; every workload also reports the allocator libraries it finds "
            "in its own `/proc/self/maps`, which must match; JSMalloc runs also write their "
            "`JSMALLOC_STATS_ON_EXIT` report, whose first line must start with `JSMalloc ` and name "
            "the expected front-end / back-end.")
        L.append(
            "- Ratios compare `jsmalloc` (default: per-CPU front-end, hugepage-aware back-end) with "
            "the best of the peers (glibc, jemalloc, tcmalloc, mimalloc) on each workload; "
            "`jsmalloc-perthread` (`JSMALLOC_PER_CPU=0`), `jsmalloc-legacy` "
            "(`JSMALLOC_BACKEND=legacy`), `jsmalloc-nosample` (`JSMALLOC_SAMPLE_INTERVAL=0`), "
            "`jsmalloc-sample64k` (`JSMALLOC_SAMPLE_INTERVAL=65536`), `jsmalloc-numa` "
            "(`JSMALLOC_NUMA_AWARE=1`) and `jsmalloc-numa2` (`JSMALLOC_NUMA_AWARE=1 "
            "JSMALLOC_NUMA_TOPOLOGY=0/1`, an injected two-node topology) are shown but are not "
            "peers. Geomean rows are geometric means over the workloads of each column's ratio to "
            "the best peer. `jsmalloc` samples the heap at its default interval (2 MiB) and runs "
            "with NUMA-aware mode off; each configuration's report must show its sampling "
            "interval and NUMA mode.")
        L.append(
            "- Hugepage coverage = `AnonHugePages / Anonymous` from `/proc/self/smaps_rollup`, read "
            "by the workload itself: for `steady_churn` at the end of the steady state (working set "
            "still live) and every 0.5 s during it (from 1 s on); for `fragmentation` after the last round's "
            "large objects are allocated.")
        L.append("")
        L.append("| workload | what it does |")
        L.append("|---|---|")
        for wl in self.workloads:
            L.append(f"| `{wl}` | {WORKLOAD_NOTES.get(wl, '')} |")
        L.append("")
        L.append("## Targets")
        L.append("")
        trows = []
        for name, target, fig, met in self.targets():
            trows.append([name, target, fig, "n/a" if met is None else ("**met**" if met else "**missed**")])
        L.append(md_table(["target", "goal", "this run", "status"], trows, right_from=9))
        L.append("")
        if "ratios" in charts:
            L.append(f"![JSMalloc / best peer]({os.path.relpath(charts['ratios'], doc_dir)})")
            L.append("")
        L.append("## Wall time (s, median)")
        L.append("")
        L.append(md_table(*self.metric_table("wall_s", 1, ".2f")))
        L.append("")
        if "times_vs_glibc" in charts:
            L.append(f"![wall time normalised to glibc]({os.path.relpath(charts['times_vs_glibc'], doc_dir)})")
            L.append("")
        L.append("## Peak RSS (MiB, median of the workloads' `VmHWM`)")
        L.append("")
        L.append(md_table(*self.metric_table("maxrss_kib", 1024, ".1f")))
        L.append("")
        L.append("## User+sys CPU time (s, median)")
        L.append("")
        L.append(md_table(*self.metric_table("cpu_s", 1, ".2f")))
        L.append("")
        L.append("## Hugepage coverage")
        L.append("")
        if self.has_coverage():
            L.append(f"Kernel THP mode: {mach['thp']}. Coverage is the fraction of the process's "
                     f"anonymous memory on transparent hugepages (median of the runs).")
            L.append("")
            L.append(md_table(*self.coverage_table()))
        else:
            L.append("Not measured: neither `steady_churn` nor `fragmentation` was run.")
        L.append("")
        if "rss_over_time" in charts:
            L.append(f"![steady_churn RSS over time]({os.path.relpath(charts['rss_over_time'], doc_dir)})")
            L.append("")
        L.append("## Heap sampling overhead")
        L.append("")
        if self.has_sampling():
            L.append(f"The same library with heap sampling off (`jsmalloc-nosample`), at the default "
                     f"interval of 2 MiB (`jsmalloc`) and at 64 KiB (`jsmalloc-sample64k`); ratios to "
                     f"sampling off (median of the runs; below 1 is noise). Target: geomean wall-time "
                     f"ratio at the default <= {SAMPLING_TARGET:.2f}.")
            L.append("")
            L.append(md_table(*self.sampling_table()))
        else:
            L.append("Not measured: the run did not include `jsmalloc-nosample` and `jsmalloc`.")
        L.append("")
        L.append("## NUMA-aware mode cost")
        L.append("")
        if self.has_numa():
            L.append(f"The same library with NUMA-aware mode off (`jsmalloc`), on "
                     f"(`{NUMA_ON}`: `JSMALLOC_NUMA_AWARE=1`, the machine's topology) and on with an "
                     f"injected two-node topology (`{NUMA_2}`: `JSMALLOC_NUMA_TOPOLOGY=0/1`, CPU 0 "
                     f"= node 0, CPU 1 = node 1, so two partitions and every free checks the "
                     f"object's home node); ratios to NUMA off (median of the runs; below 1 is "
                     f"noise).")
            numa_lines = {a: l for a, l in mach.get("js_numa", {}).items()
                          if a in ("jsmalloc", NUMA_ON, NUMA_2)}
            if numa_lines:
                L.append("")
                L.append("NUMA line of each configuration's `JSMALLOC_STATS_ON_EXIT` report (checked "
                         "on every run):")
                L.append("")
                for a, line in numa_lines.items():
                    L.append(f"- `{a}`: {line}")
            L.append("")
            L.append(md_table(*self.numa_table()))
            L.append("")
            if self.numa_callgrind():
                L.append("Callgrind instructions per malloc+free pair (`bench/fastpath/callgrind_pairs "
                         "--allocators jsmalloc` run again with each configuration's environment; "
                         "one thread on CPU 0, so node 0 in `jsmalloc-numa2`):")
                L.append("")
                L.append(md_table(*self.numa_callgrind_table()))
            elif self.callgrind:
                L.append("Callgrind: not measured for the NUMA configurations in this run.")
            else:
                L.append("Callgrind: not run.")
            L.append("")
            L.append(self.numa_sentence())
        else:
            L.append("Not measured: the run did not include `jsmalloc` and `jsmalloc-numa` or "
                     "`jsmalloc-numa2`.")
        L.append("")
        mt = self.micro_table()
        L.append("## Micro-benchmarks")
        L.append("")
        if mt:
            mt_time = self.micro["min_time"]
            L.append(f"`build-bench/bench/micro/jsmalloc_micro` under each allocator, "
                     f"`--benchmark_filter='{self.micro['filter']}'`"
                     + (f", `--benchmark_min_time={mt_time:g}`" if mt_time else "")
                     + ". Nanoseconds per item: the benchmark's `ns_per_pair` / `ns_per_object` "
                     "counter (per thread) where it has one, otherwise 1e9 / `items_per_second`.")
            L.append("")
            L.append(md_table(*mt))
        else:
            L.append("Not run (`bench/micro` not built, or `--no-micro`).")
        L.append("")
        L.append("## Fast path (callgrind instructions per malloc+free pair)")
        L.append("")
        if self.callgrind:
            L.append("Output of `bench/fastpath/callgrind_pairs`, verbatim:")
            L.append("")
            L.append(self.callgrind["text"])
        else:
            L.append("Not run (`bench/fastpath/callgrind_pairs` absent, valgrind missing, or "
                     "`--no-callgrind`).")
        L.append("")
        L.append("## Analysis")
        L.append("")
        L.append(self.misses_sentence())
        L.append("")
        L.append(ANALYSIS_BEGIN)
        if kept_analysis:
            L.append(kept_analysis)
        L.append(ANALYSIS_END)
        L.append("")
        return "\n".join(L)
