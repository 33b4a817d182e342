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

# The runner's sampling periods (bench/run sets them; the defaults match).
RSS_INTERVAL = 0.05
SMAPS_EVERY = 10

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
# Paced workloads: their wall time is set by sleeps (an idle period, pauses
# around a trim, a fixed request rate), not by the allocator's speed, so it
# gets no wall-time ratio (their CPU time still compares).
PACED_WORKLOADS = ("idle_after_burst", "fragmented_trim", "soak")
# Workloads whose RSS trace (the runner's samples) is drawn, and the file name
# of each chart in the chart directory; steady_churn keeps its old name.
RSS_CHARTS = {
    "idle_after_burst": "rss_idle_after_burst.png",
    "sparse_large": "rss_sparse_large.png",
    "fragmented_trim": "rss_fragmented_trim.png",
    "soak": "rss_soak.png",
    "steady_churn": "rss_over_time.png",
}
# Configurations left out of the RSS charts: they differ from `jsmalloc` in
# sampling or NUMA bookkeeping only, which does not change the memory curve.
CHART_SKIP = ("jsmalloc-nosample", "jsmalloc-sample64k", "jsmalloc-numa", "jsmalloc-numa2",
              "jsmalloc-again")
AA_CONFIG = "jsmalloc-again"
CHART_STYLE = {
    "glibc": "lc rgb '#7f7f7f' lw 2",
    "jemalloc": "lc rgb '#1f77b4' lw 2",
    "tcmalloc": "lc rgb '#2ca02c' lw 2",
    "mimalloc": "lc rgb '#9467bd' lw 2",
    "jsmalloc": "lc rgb '#d62728' lw 3",
    "jsmalloc-perthread": "lc rgb '#ff7f0e' lw 2 dt 2",
    "jsmalloc-legacy": "lc rgb '#8c564b' lw 2 dt 3",
}

# The memory tables: per workload, rows (label, key, divisor, format, ratio?)
# where ratio says whether the row gets a best peer and a ratio (lower is
# better); the others are context (the live bytes, operation counts).
MEMORY_TABLES = {
    "idle_after_burst": [
        ("live at the end (MiB)", "live_kib", 1024, ".1f", False),
        ("peak RSS (MiB)", "maxrss_kib", 1024, ".1f", True),
        ("RSS right after the frees (MiB)", "rss_freed_kib", 1024, ".1f", True),
        ("RSS after 1 s idle (MiB)", "rss_idle1_kib", 1024, ".1f", True),
        ("RSS after 2 s idle (MiB)", "rss_idle2_kib", 1024, ".1f", True),
        ("RSS after 5 s idle (MiB)", "rss_idle5_kib", 1024, ".1f", True),
        ("RSS after 10 s idle (MiB)", "rss_idle10_kib", 1024, ".1f", True),
        ("CPU time (s)", "cpu_s", 1, ".2f", True),
    ],
    "small_process": [
        ("RSS at main() entry, before any allocation of the program (MiB)", "start_rss_kib",
         1024, ".2f", True),
        ("of it anonymous: runtimes' and allocator's start-up (MiB)", "start_anon_kib", 1024,
         ".2f", True),
        ("peak RSS, part 1: ~100 KiB live, 1 thread (MiB)", "hwm1_kib", 1024, ".2f", True),
        ("peak RSS, whole run: ~3 MiB live, 2 threads (MiB)", "maxrss_kib", 1024, ".2f", True),
        ("wall time (ms)", "wall_s", 0.001, ".1f", True),
    ],
    "fragmented_trim": [
        ("live after the frees (MiB)", "live_kib", 1024, ".1f", False),
        ("peak RSS (MiB)", "maxrss_kib", 1024, ".1f", True),
        ("RSS before the trim (MiB)", "rss_pretrim_kib", 1024, ".1f", True),
        ("RSS after the trim (MiB)", "rss_trim_kib", 1024, ".1f", True),
        ("trim call (ms)", "trim_ms", 1, ".1f", False),
        ("CPU time (s)", "cpu_s", 1, ".2f", True),
    ],
    "sparse_large": [
        ("operations", "ops", 1, ".0f", False),
        ("bytes written in live blocks at the end (MiB)", "written_kib", 1024, ".1f", False),
        ("peak RSS (MiB)", "maxrss_kib", 1024, ".1f", True),
        ("RSS at the end, all slots live (MiB)", "rss_end_kib", 1024, ".1f", True),
        ("largest AnonHugePages sampled (MiB)", "trace_max_thp_kib", 1024, ".1f", False),
        ("system time (s)", "sys_s", 1, ".2f", True),
        ("wall time (s)", "wall_s", 1, ".2f", True),
    ],
    "soak": [
        ("operations", "ops", 1, ".0f", False),
        ("live at the end (MiB)", "live_kib", 1024, ".1f", False),
        ("peak RSS (MiB)", "maxrss_kib", 1024, ".1f", True),
        ("RSS / live, median past the first third", "rss_live_median", 1, ".3f", True),
        ("RSS / live at the end", "rss_live_final", 1, ".3f", True),
        ("ticks run late (of 100/s per thread)", "late_ticks", 1, ".0f", False),
        ("aligned allocations returned misaligned", "misaligned", 1, ".0f", False),
        ("CPU time (s)", "cpu_s", 1, ".2f", True),
    ],
}
# Why an allocator keeps its memory through idle_after_burst's idle period
# (the Debian 12 peers' defaults), for the allocators whose RSS did not drop.
IDLE_WHY = {
    "glibc": "glibc gives memory back only inside free() (unmapping the blocks it mmapped, "
             "trimming the top of a heap) or in malloc_trim()",
    "jemalloc": "jemalloc purges dirty pages on a 10 s decay curve from inside its own calls "
                "(its background thread is off by default)",
    "tcmalloc": "gperftools tcmalloc releases free pages a little at a time from inside free()",
    "mimalloc": "mimalloc purges freed pages after a delay that it checks inside its own calls",
    "jsmalloc": "JSMalloc releases idle memory from its background thread, when that runs "
                "(`JSMALLOC_BACKGROUND`)",
}

# The memory verdict: per workload, its peak and its end-of-run figure
# (after the idle period, after the trim, with all slots live, ...).
MEMORY_VERDICT = [
    ("idle_after_burst", "peak RSS", "maxrss_kib"),
    ("idle_after_burst", "RSS after 10 s idle", "rss_idle10_kib"),
    ("small_process", "peak RSS, part 1", "hwm1_kib"),
    ("small_process", "peak RSS", "maxrss_kib"),
    ("fragmented_trim", "peak RSS", "maxrss_kib"),
    ("fragmented_trim", "RSS after the trim", "rss_trim_kib"),
    ("sparse_large", "peak RSS", "maxrss_kib"),
    ("sparse_large", "RSS at the end", "rss_end_kib"),
    ("soak", "peak RSS", "maxrss_kib"),
    ("soak", "RSS / live (median)", "rss_live_median"),
]

WORKLOAD_NOTES = {
    "larson": "server-like churn, 4 threads, batches of blocks freed by another thread (1 iteration in 8 timed)",
    "request_loop": ("2 threads serving requests: 2-12 mixed objects, a response grown by realloc, "
                     "1 in 1000 a 256 KiB - 4 MiB buffer written at its head, a session table; "
                     "a quarter of the frees on the other thread; every request timed"),
    "kv_cache": ("the demo's key-value cache service at bench size (256 MiB of entries, 2 threads, "
                 "3M requests): GET/SET/DELETE and rare multi-GETs; every request timed"),
    "xmalloc": "producer/consumer: every block freed by another thread",
    "cache_scratch": "false sharing (passive/active) and list locality, 2 threads",
    "fragmentation": "4M small objects, 90% freed scattered, then larger objects",
    "steady_churn": "200-400 MiB working set replaced in waves, 2 threads",
    "large_churn": "64 KiB - 64 MiB blocks, every page written, 3 threads",
    "realloc_builder": "interleaved realloc / std::string / std::vector growth",
    "symbolic": "binary trees and a hash-consed expression simplifier (new/delete)",
    "alloc_test": "thread-local churn on 1, 2 then 4 threads",
    "idle_after_burst": "600 MiB burst on 2 threads, 90% freed (half cross-thread), then 10 s "
                        "with no allocator call",
    "small_process": "a short-lived tool: ~100 KiB live on 1 thread, then ~3 MiB on 2",
    "fragmented_trim": "512 MiB of 16 B - 2 KiB objects, 15 of 16 freed scattered, then the "
                       "allocator's trim call",
    "sparse_large": "20,000 live slots, 1 in 16 a 1-5 MiB buffer with only 4 KiB written",
    "fork_server": ("2 threads churn ~20 MiB of small objects while the main thread forks 100 "
                    "times; each child allocates, writes and checks 2,000 objects of up to 4 KiB"),
    "soak": "4 threads at a fixed request rate for 60 s, ~130 MiB live, Pareto sizes to 4 MiB",
}


def geomean(values):
    vals = [v for v in values if v is not None and v > 0]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


# Two-sided 95% Student t quantiles by degrees of freedom (1.96 beyond).
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
       10: 2.23, 12: 2.18, 15: 2.13, 20: 2.09, 30: 2.04}


def t95(dof):
    best = 1.96
    for d in sorted(T95, reverse=True):
        if dof >= d:
            return T95[d] if dof <= 30 else 1.96
    return best


def log_ci(samples):
    """95% confidence interval of the geometric mean of positive samples
    (Student t on the logs), or None with fewer than two."""
    logs = [math.log(v) for v in samples if v is not None and v > 0]
    n = len(logs)
    if n < 2:
        return None
    mean = sum(logs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1))
    half = t95(n - 1) * sd / math.sqrt(n)
    return math.exp(mean - half), math.exp(mean + half)


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


# Columns after "scale" (added for the memory workloads; the earlier ones keep
# their places). Empty where a workload does not report the figure.
# `wl: latency key=value` (bench/lib/latency.h) as lat_<key> in each row;
# lat_rps (requests / seconds) is derived by bench/run.
LAT_NUMERIC = ["requests", "seconds", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns", "rps"]
# The latency rows of each latency workload's table: (label, key, divisor,
# format, higher is better).
LATENCY_ROWS = [
    ("requests/s (M)", "lat_rps", 1e6, ".3f", True),
    ("p50 (us)", "lat_p50_ns", 1e3, ".3f", False),
    ("p90 (us)", "lat_p90_ns", 1e3, ".3f", False),
    ("p99 (us)", "lat_p99_ns", 1e3, ".2f", False),
    ("p99.9 (us)", "lat_p999_ns", 1e3, ".2f", False),
    ("max (us)", "lat_max_ns", 1e3, ".0f", False),
]
# fork_server's figures (`wl: fork`), as fork_<key>; the table's rows.
FORK_NUMERIC = ["forks", "seconds", "pause_p50_us", "pause_max_us", "child_p50_ms", "child_max_ms",
                "child_dirty_kib", "child_dirty_max_kib", "parent_faults", "churn_mops"]
FORK_ROWS = [
    ("100 forks, parent waiting for each child (s)", "fork_seconds", 1, ".3f", False),
    ("fork() pause, median (us)", "fork_pause_p50_us", 1, ".0f", False),
    ("fork() pause, max (us)", "fork_pause_max_us", 1, ".0f", False),
    ("child run time, median (ms)", "fork_child_p50_ms", 1, ".2f", False),
    ("child run time, max (ms)", "fork_child_max_ms", 1, ".1f", False),
    ("child private dirty, mean (MiB)", "fork_child_dirty_kib", 1024, ".1f", False),
    ("parent page faults during the forks", "fork_parent_faults", 1, ".0f", False),
    ("parent churn (M alloc+free per s)", "fork_churn_mops", 1, ".2f", True),
]
LATENCY_POINTS = [("p50", "lat_p50_ns"), ("p90", "lat_p90_ns"), ("p99", "lat_p99_ns"),
                  ("p99.9", "lat_p999_ns"), ("max", "lat_max_ns")]

MEM_CSV_KEYS = ["live_kib", "rss_freed_kib", "rss_idle1_kib", "rss_idle2_kib", "rss_idle5_kib",
                "rss_idle10_kib", "rss_pretrim_kib", "rss_trim_kib", "trim_ms", "trim_fn",
                "hwm1_kib", "ops", "written_kib", "rss_end_kib", "trace_max_thp_kib",
                "rss_live_median", "rss_live_final", "late_ticks", "misaligned", "start_rss_kib",
                "start_anon_kib", "trace_shift_s", "rss_trace"] + [f"lat_{k}" for k in LAT_NUMERIC] + [f"fork_{k}" for k in FORK_NUMERIC]


def write_csv(path, rows, med, args):
    keys = ["workload", "allocator", "run", "order", "wall_s", "user_s", "sys_s", "cpu_s",
            "maxrss_kib", "ru_maxrss_kib", "checksum", "exit", "thp_kib", "anon_kib", "thp_cov",
            "thp_avg_cov", "failed"]
    out_dir = os.path.dirname(os.path.abspath(path))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys + ["scale"] + MEM_CSV_KEYS)

        def cell(v):
            if isinstance(v, float):
                return f"{v:.4f}"
            return v

        def mem_cells(r):
            vals = []
            for k in MEM_CSV_KEYS:
                v = r.get(k, "")
                if k == "rss_trace" and v:
                    v = os.path.relpath(v, out_dir)
                vals.append(cell(v))
            return vals

        for r in rows:
            w.writerow([cell(r.get(k, "")) for k in keys] + [f"{args.scale:g}"] + mem_cells(r))
        for (wl, a), m in med.items():
            vals = dict(m, workload=wl, allocator=a, run="median", order="", exit=0)
            w.writerow([cell(vals.get(k, "")) for k in keys] + [f"{args.scale:g}"]
                       + mem_cells(vals))


# ------------------------------------------------------ chart helpers --
# The pieces of the gnuplot scripts Report.charts() writes (Report._chart puts
# them in one frame).

# The clustered bar charts' settings (ratios, times_vs_glibc).
HISTOGRAM = ["set style data histograms",
             "set style histogram clustered gap 1",
             "set style fill solid 0.85 border -1",
             "set boxwidth 0.9",
             "set yrange [0:*]",
             "set grid ytics",
             "set xtics rotate by -25"]


def chart_style(alloc):
    return CHART_STYLE.get(alloc, "lw 2")


def hline(y, style):
    """A horizontal line across the chart at y (a target, the 1 of a ratio)."""
    return f"set arrow from graph 0, first {y} to graph 1, first {y} nohead {style}"


def write_dat(path, header, rows):
    """A gnuplot data file: `# header`, then a line per (label, values),
    a value of None written NaN."""
    with open(path, "w") as f:
        f.write(f"# {header}\n")
        for label, vals in rows:
            f.write(label + " " + " ".join("NaN" if v is None else str(v) for v in vals) + "\n")


def columns(dat, items):
    """Plot items drawn from columns of the one data file dat: per
    (using, rest), `<file> using <using> <rest>`, the first naming the file
    and the others reusing it ('')."""
    return [(f"'{dat}'" if i == 0 else "''") + f" using {u} {rest}"
            for i, (u, rest) in enumerate(items)]


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

    def best_peer_max(self, wl, key):
        best = None
        for p in self.peers:
            v = self.value(wl, p, key)
            if v is not None and (best is None or v > best[1]):
                best = (p, v)
        return best

    # ------------------------------------------------------------ latency --

    def latency_workloads(self):
        return [wl for wl in self.workloads
                if any(self.value(wl, a, "lat_p999_ns") is not None for a in self.allocs)]

    def figure_ratio(self, wl, key, higher_better, alloc="jsmalloc"):
        """jsmalloc / best peer; for a higher-is-better figure the best peer
        is the highest (so above 1 is better there, below 1 elsewhere)."""
        best = self.best_peer_max(wl, key) if higher_better else self.best_peer(wl, key)
        v = self.value(wl, alloc, key)
        if best is None or v is None or best[1] <= 0:
            return None, None
        return v / best[1], best[0]

    def figure_table(self, wl, spec, spread_keys):
        """A row per figure of `spec` ((label, key, divisor, format, higher
        is better)), a column per allocator (± the spread for spread_keys),
        the best peer and jsmalloc / best."""
        headers = ["figure"] + self.allocs + ["best peer", "jsmalloc / best"]
        rows = []
        for label, key, div, fmt, higher in spec:
            row = [label] + [self._mem_cell(wl, a, key, div, fmt, key in spread_keys) for a in self.allocs]
            r, who = self.figure_ratio(wl, key, higher)
            row += [who or "", fnum(r, ".3f")]
            rows.append(row)
        return headers, rows

    def latency_table(self, wl):
        return self.figure_table(wl, LATENCY_ROWS, ("lat_rps", "lat_p999_ns"))

    def has_fork(self):
        return "fork_server" in self.workloads and any(
            self.value("fork_server", a, "fork_seconds") is not None for a in self.allocs)

    def fork_table(self):
        return self.figure_table("fork_server", FORK_ROWS, ("fork_seconds", "fork_child_dirty_kib"))

    def latency_targets(self):
        """(p99.9 met, throughput met, per-workload text) over the latency
        workloads, or None when there is nothing to compare."""
        wls = self.latency_workloads()
        if not wls or not self.has_js or not self.peers:
            return None
        tail, thr, parts = [], [], []
        for wl in wls:
            t, tw = self.figure_ratio(wl, "lat_p999_ns", False)
            q, qw = self.figure_ratio(wl, "lat_rps", True)
            if t is not None:
                tail.append(t)
            if q is not None:
                thr.append(q)
            parts.append(f"{wl}: p99.9 {fnum(t, '.2f')}x {tw}, req/s {fnum(q, '.2f')}x {qw}")
        if not tail or not thr:
            return None
        return all(t <= 1.0 for t in tail), all(q >= 1.0 for q in thr), "; ".join(parts)

    def latency_chart(self, wl, chart_dir, data_dir):
        allocs = [a for a in self.allocs if a not in CHART_SKIP
                  and self.value(wl, a, "lat_p999_ns") is not None]
        if not allocs:
            return None
        dat = os.path.join(data_dir, f"latency_{wl}.dat")

        def micros(a, key):
            v = self.value(wl, a, key)
            return v / 1e3 if v is not None and v > 0 else None
        write_dat(dat, "point " + " ".join(allocs) + "  (microseconds)",
                  [(label, [micros(a, key) for a in allocs]) for label, key in LATENCY_POINTS])
        return self._chart(
            chart_dir, data_dir, f"latency_{wl}", "900,480",
            f"{wl}: request latency percentiles (median of runs; lower is better)",
            ["set logscale y", "set grid ytics mytics", "set ylabel 'microseconds (log scale)'",
             "set xlabel 'percentile'", f"set xrange [-0.3:{len(LATENCY_POINTS) - 0.7}]",
             "set key top left"],
            columns(dat, [(f"0:{i + 2}:xtic(1)", f"with linespoints title '{a}' {chart_style(a)} pt 7")
                          for i, a in enumerate(allocs)]))

    def latency_markdown(self, charts, doc_dir):
        L = ["## Request latency", ""]
        wls = self.latency_workloads()
        if not wls:
            L += ["Not measured: no latency workload (`request_loop`, `kv_cache`, `larson`) was run.", ""]
            return L
        L.append(
            "Every request is timed inside the workload with the TSC (`bench/lib/latency.h`: "
            "`rdtsc` calibrated against `CLOCK_MONOTONIC`, ~10 ns a read) into a log-linear "
            "histogram (32 buckets per power of two, so a percentile is exact to 3%); `larson` "
            "times one iteration in 8, the others every request. Figures are medians of the runs "
            "(± the spread (max - min) / median for requests/s and p99.9). requests/s is requests "
            "over the slowest thread's serving time. `jsmalloc / best`: for requests/s the best "
            "peer is the fastest and above 1 is better; for latencies below 1 is better.")
        L.append("")
        lt = self.latency_targets()
        if lt:
            L.append(f"Per workload, JSMalloc against the best peer: {lt[2]}.")
            L.append("")
        for wl in wls:
            L.append(f"### {wl}")
            L.append("")
            L.append(WORKLOAD_NOTES.get(wl, ""))
            L.append("")
            L.append(md_table(*self.latency_table(wl)))
            L.append("")
            if f"latency_{wl}" in charts:
                L.append(f"![{wl}: latency percentiles]({os.path.relpath(charts[f'latency_{wl}'], doc_dir)})")
                L.append("")
        return L

    def ratio(self, wl, key, alloc="jsmalloc"):
        if key == "wall_s" and wl in PACED_WORKLOADS:
            return None
        best = self.best_peer(wl, key)
        v = self.value(wl, alloc, key)
        if best is None or v is None or best[1] <= 0:
            return None
        return v / best[1]

    def geo_ratio(self, key, alloc="jsmalloc"):
        return geomean([self.ratio(wl, key, alloc) for wl in self.workloads])

    # -------------------------------------------------------------- noise --

    def run_values(self, wl, alloc, key):
        """{repetition: value} of the runs that did not fail."""
        out = {}
        for r in self.rows:
            if (r["workload"] == wl and r["allocator"] == alloc and not r.get("failed")
                    and r.get(key, "") != ""):
                out[r["run"]] = float(r[key])
        return out

    def paired_ratios(self, wl, key, alloc, ref):
        """alloc / ref per repetition: the allocators of one repetition ran
        one after another in a shuffled order, so pairing them cancels what
        drifts between repetitions."""
        a, b = self.run_values(wl, alloc, key), self.run_values(wl, ref, key)
        return {rep: a[rep] / b[rep] for rep in a if rep in b and b[rep] > 0 and a[rep] > 0}

    def ratio_ci(self, wl, key, alloc="jsmalloc"):
        """95% CI of alloc / best peer (the peer best by median), paired by
        repetition; None with fewer than two repetitions."""
        if key == "wall_s" and wl in PACED_WORKLOADS:
            return None
        best = self.best_peer(wl, key)
        if best is None:
            return None
        return log_ci(list(self.paired_ratios(wl, key, alloc, best[0]).values()))

    def geo_ratio_ci(self, key, alloc="jsmalloc"):
        """95% CI of the geomean over workloads of alloc / best peer: one
        geomean per repetition (over the workloads it has), then Student t."""
        per_rep = {}
        for wl in self.workloads:
            if key == "wall_s" and wl in PACED_WORKLOADS:
                continue
            best = self.best_peer(wl, key)
            if best is None:
                continue
            for rep, r in self.paired_ratios(wl, key, alloc, best[0]).items():
                per_rep.setdefault(rep, []).append(r)
        n_wl = max((len(v) for v in per_rep.values()), default=0)
        return log_ci([geomean(v) for v in per_rep.values() if len(v) == n_wl])

    def aa_rows(self):
        """The A/A check: jsmalloc-again / jsmalloc per workload (wall time
        and peak RSS), paired by repetition, with 95% CIs."""
        if AA_CONFIG not in self.allocs or "jsmalloc" not in self.allocs:
            return None
        rows, wrong, n = [], [], 0
        for wl in self.workloads:
            row = [wl]
            for key in ("wall_s", "maxrss_kib"):
                rs = list(self.paired_ratios(wl, key, AA_CONFIG, "jsmalloc").values())
                ci = log_ci(rs)
                row += [fnum(geomean(rs), ".3f"), self.ci_text(ci)]
                if ci is not None:
                    n += 1
                    if ci[0] > 1.0 or ci[1] < 1.0:
                        wrong.append(f"{wl} {'time' if key == 'wall_s' else 'RSS'}")
            rows.append(row)
        return (["workload", "wall time ratio", "95% CI", "peak RSS ratio", "95% CI"], rows, wrong, n)

    def aa_sentence(self):
        aa = self.aa_rows()
        if aa is None:
            return None
        _, _, wrong, n = aa
        if n == 0:
            return "A/A check: one run only, so no interval to check."
        expect = 0.05 * n
        if not wrong:
            return (f"A/A check: all {n} intervals of jsmalloc-again / jsmalloc contain 1 (the same "
                    f"library and settings run twice): the intervals above are not too narrow.")
        verdict = ("as many as chance allows (5% of intervals miss at 95%)" if len(wrong) <= max(1, 2 * expect)
                   else "more than chance allows: the noise of this run is larger than its intervals say")
        return (f"A/A check: {len(wrong)} of {n} intervals of jsmalloc-again / jsmalloc exclude 1 "
                f"({', '.join(wrong)}), {verdict}.")

    @staticmethod
    def verdict_word(ci, target=1.0):
        """Where a lower-is-better ratio stands against `target` given its CI."""
        if ci is None:
            return "spread unknown"
        if ci[1] < target:
            return "better"
        if ci[0] > target:
            return "worse"
        return "within noise"

    @staticmethod
    def ci_text(ci):
        return "n/a" if ci is None else f"{ci[0]:.2f}-{ci[1]:.2f}"

    def metric_table(self, key, scale, fmt):
        """Rows of a per-workload table of one metric (medians), with the best
        peer, the JSMalloc ratio and a geomean row."""
        headers = ["workload"] + self.allocs + ["best peer", "jsmalloc / best", "95% CI", "verdict"]
        rows = []
        for wl in self.workloads:
            row = [wl]
            for a in self.allocs:
                v = self.value(wl, a, key)
                row.append(fnum(None if v is None else v / scale, fmt))
            best = self.best_peer(wl, key)
            row.append(best[0] if best else "n/a")
            if key == "wall_s" and wl in PACED_WORKLOADS:
                row += ["paced", "", ""]
            else:
                ci = self.ratio_ci(wl, key)
                row += [fnum(self.ratio(wl, key), ".3f"), self.ci_text(ci), self.verdict_word(ci)]
            rows.append(row)
        geo = ["geomean vs best peer"]
        for a in self.allocs:
            geo.append(fnum(self.geo_ratio(key, a), ".3f"))
        gci = self.geo_ratio_ci(key)
        geo += ["", fnum(self.geo_ratio(key), ".3f"), self.ci_text(gci), self.verdict_word(gci)]
        rows.append(geo)
        return headers, rows

    # ------------------------------------------------------- sampling cost --

    def has_sampling(self):
        return SAMPLING_OFF in self.allocs and ("jsmalloc" in self.allocs or SAMPLING_64K in self.allocs)

    def sampling_ratio(self, wl, alloc, key):
        if key == "wall_s" and wl in PACED_WORKLOADS:
            return None
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
        if key == "wall_s" and wl in PACED_WORKLOADS:
            return None
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

    # ----------------------------------------------------- memory over time --

    def memory_workloads(self):
        return [wl for wl in MEMORY_TABLES if wl in self.workloads]

    def _mem_cell(self, wl, a, key, div, fmt, with_spread=True):
        v = self.value(wl, a, key)
        if v is None:
            return "n/a"
        text = format(v / div, fmt)
        spread = (self.med.get((wl, a)) or {}).get("spread", {}).get(key)
        if with_spread and spread is not None and self.run["runs"] > 1:
            text += f" ±{100 * spread:.0f}%"
        return text

    def memory_table(self, wl):
        """One workload's memory figures: a row per figure, a column per
        allocator (median of the runs, ± the spread (max - min) / median when
        there are several), the best peer and jsmalloc / best peer."""
        headers = ["figure"] + self.allocs + ["best peer", "jsmalloc / best"]
        rows = []
        for label, key, div, fmt, compare in MEMORY_TABLES[wl]:
            # Context rows (live bytes, operation counts) are the same in
            # every run by construction: no spread for them.
            row = [label] + [self._mem_cell(wl, a, key, div, fmt, compare) for a in self.allocs]
            best = self.best_peer(wl, key) if compare else None
            row.append(best[0] if best else "")
            row.append(fnum(self.ratio(wl, key), ".3f") if compare else "")
            rows.append(row)
        if wl == "fragmented_trim":
            fns = [(self.med.get((wl, a)) or {}).get("trim_fn", "") or "n/a" for a in self.allocs]
            rows.append(["trim call made"] + fns + ["", ""])
        return headers, rows

    def verdict_rows(self):
        """[(workload, label, best peer, best value, {alloc: ratio})] of the
        memory verdict figures that were measured."""
        out = []
        for wl, label, key in MEMORY_VERDICT:
            if wl not in self.workloads:
                continue
            best = self.best_peer(wl, key)
            if best is None or best[1] <= 0:
                continue
            ratios = {}
            for a in self.allocs:
                v = self.value(wl, a, key)
                ratios[a] = None if v is None else v / best[1]
            out.append((wl, label, key, best, ratios))
        return out

    def verdict_table(self):
        headers = ["workload", "figure", "best peer"] + self.allocs
        rows = []
        for wl, label, key, best, ratios in self.verdict_rows():
            unit = "" if key == "rss_live_median" else " MiB"
            div = 1 if key == "rss_live_median" else 1024
            rows.append([wl, label, f"{best[0]} {best[1] / div:.{3 if unit == '' else 1}f}{unit}"]
                        + [fnum(ratios[a], ".2f") for a in self.allocs])
        geo = ["geomean", "", ""]
        for a in self.allocs:
            geo.append(fnum(geomean([r[4][a] for r in self.verdict_rows()]), ".2f"))
        rows.append(geo)
        return headers, rows

    def verdict_sentence(self):
        vr = self.verdict_rows()
        if not vr:
            return ""
        if not self.has_js:
            return "No verdict for JSMalloc: `jsmalloc` was not run."
        js = [(wl, label, r["jsmalloc"]) for wl, label, _, _, r in vr if r.get("jsmalloc") is not None]
        if not js:
            return "No verdict for JSMalloc: no memory figure of `jsmalloc` was measured."
        g = geomean([x[2] for x in js])
        worse = sorted([x for x in js if x[2] > 1.10], key=lambda x: -x[2])
        better = [x for x in js if x[2] <= 1.00]
        parts = [f"Memory verdict: over the {len(js)} memory figures measured, JSMalloc's geomean "
                 f"ratio to the best peer is {g:.2f} ("
                 + ("uses less memory than the best peer" if g < 0.95 else
                    "about as much as the best peer" if g <= 1.05 else
                    "uses more memory than the best peer") + ")."]
        if better:
            parts.append("At or below the best peer: " + ", ".join(
                f"{wl} {label} ({r:.2f})" for wl, label, r in better) + ".")
        if worse:
            parts.append("More than 10% above the best peer: " + ", ".join(
                f"{wl} {label} ({r:.2f})" for wl, label, r in worse) + ".")
        else:
            parts.append("No figure is more than 10% above the best peer.")
        if self.run["runs"] < 3:
            parts.append(f"Only {self.run['runs']} run(s) per allocator: a few percent is within "
                         f"run-to-run noise.")
        return " ".join(parts)

    def idle_sentence(self):
        """What the idle period shows, from the data: which allocators gave
        memory back while the process made no allocator call."""
        wl = "idle_after_burst"
        if wl not in self.workloads:
            return ""
        gave, kept, at_free = [], [], []
        for a in self.allocs:
            p, f = self.value(wl, a, "maxrss_kib"), self.value(wl, a, "rss_freed_kib")
            if p and f is not None and f < 0.9 * p:
                at_free.append((a, p, f))
            f, e = self.value(wl, a, "rss_freed_kib"), self.value(wl, a, "rss_idle10_kib")
            if f is None or e is None or f <= 0:
                continue
            drop = 1 - e / f
            (gave if drop > 0.05 else kept).append((a, drop, f, e))
        parts = []
        if at_free:
            parts.append("Gave memory back in the frees themselves (peak -> right after the "
                         "frees): " + ", ".join(f"{a} ({p / 1024:.0f} -> {f / 1024:.0f} MiB)"
                                                for a, p, f in at_free)
                         + (" (glibc unmaps blocks it had mmapped and trims the top of its heaps "
                            "inside free())" if any(a == "glibc" for a, _, _ in at_free) else "")
                         + ".")
        if gave:
            parts.append("Returned memory while idle (RSS after 10 s vs right after the frees): "
                         + ", ".join(f"{a} -{100 * d:.0f}% ({f / 1024:.0f} -> {e / 1024:.0f} MiB)"
                                     for a, d, f, e in gave) + ".")
        if kept:
            why = []
            for a, _, _, _ in kept:
                key = "jsmalloc" if a.startswith("jsmalloc") else a
                if key in IDLE_WHY and IDLE_WHY[key] not in why:
                    why.append(IDLE_WHY[key])
            parts.append("Kept their RSS through the idle period (within 5%): "
                         + ", ".join(f"{a} ({f / 1024:.0f} -> {e / 1024:.0f} MiB)"
                                     for a, d, f, e in kept)
                         + ". Nothing in the process calls the allocator then, so only an "
                           "allocator with a thread of its own can give memory back"
                         + (": " + "; ".join(why) if why else "") + ".")
        return " ".join(parts)

    def memory_runs_for_chart(self, wl):
        """[(allocator, row)] to draw for wl: per allocator (CHART_SKIP
        excepted), the run with the median peak RSS (the lower middle one
        for an even count)."""
        out = []
        for a in self.allocs:
            if a in CHART_SKIP:
                continue
            rs = [r for r in self.rows if r["workload"] == wl and r["allocator"] == a
                  and not r["failed"] and r.get("rss_trace") and os.path.exists(r["rss_trace"])]
            if not rs:
                continue
            rs.sort(key=lambda r: (r["maxrss_kib"], r["run"]))
            out.append((a, rs[(len(rs) - 1) // 2]))
        return out

    def rss_charts(self, chart_dir, data_dir):
        """An RSS-over-time PNG per workload of RSS_CHARTS that was run, and
        soak's RSS / live; returns {name: path}."""
        made = {}
        for wl, fname in RSS_CHARTS.items():
            if wl not in self.workloads:
                continue
            runs = self.memory_runs_for_chart(wl)
            if not runs:
                continue
            plots, peaks = [], []
            shifted = wl == "idle_after_burst"
            # Runs of one fixed amount of work that take very different times
            # (sparse_large: 0.1 s against 10 s) share no useful time axis:
            # then x is the fraction of each run's wall time.
            walls = [r["wall_s"] for _, r in runs if r["wall_s"]]
            normalised = (not shifted and wl not in PACED_WORKLOADS and walls
                          and max(walls) > 4 * min(walls))
            for a, r in runs:
                dat = os.path.join(data_dir, f"rss_{wl}.{a}.dat")
                shift = r.get("trace_shift_s") if shifted else 0.0
                if shift in ("", None):
                    shift = 0.0
                n, peak = 0, 0
                with open(r["rss_trace"]) as f, open(dat, "w") as out:
                    out.write("# t_s rss_mib thp_mib (run %s)\n" % r["run"])
                    next(f, None)
                    for line in f:
                        t, rss, _anon, thp = line.rstrip("\n").split(",")
                        x = float(t) / r["wall_s"] if normalised else float(t) - shift
                        out.write(f"{x:.4f} {int(rss) / 1024:.2f} "
                                  f"{int(thp) / 1024 if thp else 'NaN'}\n")
                        n += 1
                        peak = max(peak, int(rss))
                if n == 0:
                    continue
                peaks.append(peak)
                plots.append(f"'{dat}' using 1:2 with lines {chart_style(a)} "
                             f"title '{a} (run {r['run']}, {r['wall_s']:.1f} s)'")
            if not plots:
                continue
            log_y = max(peaks) > 10 * max(1, min(peaks))
            if normalised:
                xlabel = ("fraction of the run (0 = start, 1 = exit; the wall time of each run is in "
                          "the key)")
                extra = ["set xrange [0:1]"]
            elif shifted:
                xlabel = "seconds since the frees (the idle period runs from 0 to 10 s; before 0: the burst)"
                extra = ["set arrow from 0, graph 0 to 0, graph 1 nohead dt 2 lc rgb '#333333'",
                         "set arrow from 10, graph 0 to 10, graph 1 nohead dt 2 lc rgb '#333333'",
                         "set xrange [*:*]"]
            else:
                xlabel = "elapsed (s)"
                extra = ["set xrange [0:*]"]
            what = {"idle_after_burst": "burst, 90% freed, then 10 s idle",
                    "sparse_large": "1-5 MiB buffers with only 4 KiB written",
                    "fragmented_trim": "fill, free 15/16, trim",
                    "soak": "paced 4-thread churn, ~130 MiB live",
                    "steady_churn": "working set in waves"}.get(wl, "")
            png = self._chart(
                chart_dir, data_dir, f"rss_{wl}", "1100,540",
                f"{wl}: {what}\nresident set size sampled by bench/run every "
                f"{int(RSS_INTERVAL * 1000)} ms, scale {self.run['scale']:g}, the median-peak run "
                "of each allocator",
                [f"set xlabel '{xlabel}'", f"set ylabel 'RSS (MiB{', log scale' if log_y else ''})'",
                 "set grid", "set key outside right"]
                + (["set logscale y", "set yrange [1:*]"] if log_y else ["set yrange [0:*]"]) + extra,
                plots, png_name=fname)
            if png:
                made[f"rss_{wl}"] = png
        if "soak" in self.workloads:
            plots = []
            for a, r in self.memory_runs_for_chart("soak"):
                src = r.get("live_log")
                if not src or not os.path.exists(src) or os.path.getsize(src) == 0:
                    continue
                dat = os.path.join(data_dir, f"soak_rss_live.{a}.dat")
                with open(src) as f, open(dat, "w") as out:
                    for line in f:
                        ms, rss, live = (int(x) for x in line.split())
                        if live > 0:
                            out.write(f"{ms / 1000:.2f} {rss / live:.4f}\n")
                plots.append(f"'{dat}' using 1:2 with lines {chart_style(a)} title '{a} (run {r['run']})'")
            if plots:
                png = self._chart(
                    chart_dir, data_dir, "soak_rss_live", "1100,540",
                    "soak: RSS / live bytes over time\nsampled by the workload every 100 ms, scale "
                    f"{self.run['scale']:g}, the median-peak run of each allocator",
                    ["set xlabel 'elapsed (s)'", "set ylabel 'RSS / live bytes requested'", "set grid",
                     "set key outside right", "set xrange [0:*]", "set yrange [1:*]"],
                    plots)
                if png:
                    made["soak_rss_live"] = png
        return made

    MEMORY_ABOUT = {
        "idle_after_burst": "Two threads allocate a burst (mixed 16 B - 64 KiB objects and 256 KiB - "
                            "4 MiB buffers, every page written), free 90% of it (half of the frees "
                            "on the other thread), then block: for 10 s nothing calls the allocator "
                            "while ~10% stays live. The workload reads its own RSS right after the "
                            "frees and 1, 2, 5 and 10 s later; the chart is the runner's trace with "
                            "0 at the end of the frees.",
        "small_process": "A short-lived tool: a 200-entry configuration in a `std::map` (~100 KiB live, "
                         "one thread; its peak RSS is read then), then a second thread counts words "
                         "into an `std::unordered_map` while the first sorts and formats (~3 MiB "
                         "live). Peak RSS (`VmHWM`) includes the program's code and libraries, the "
                         "same under every allocator, and the allocator's own code, data and first "
                         "mappings.",
        "fragmented_trim": "512 MiB x scale of 16 B - 2 KiB objects, 15 of every 16 freed in a "
                           "scattered order, then the allocator's trim call (looked up with `dlsym`: "
                           "`malloc_trim(0)` where the allocator providing `malloc` exports it, "
                           "else jemalloc's `mallctl(\"arena.4096.purge\")`, tcmalloc's "
                           "`MallocExtension_ReleaseFreeMemory()`, mimalloc's `mi_collect(true)`).",
        "sparse_large": "20,000 live slots on 2 threads, each operation replaces a random slot; one "
                        "allocation in 16 is a 1 - 5 MiB buffer of which only the first 4 KiB is "
                        "written, the others 64 B - 4 KiB written in full. The data live at any "
                        "time is ~31 MiB (the row below) in ~3.7 GiB of address space; an "
                        "allocator that backs the buffers with hugepages or recycles dirty pages "
                        "into them makes the reservations resident. A fixed operation count, so "
                        "the system time (page faults, mmap / munmap / madvise) compares too.",
        "soak": "The access pattern of `tests/reliability/soak_test.cc` under every allocator: 4 "
                "threads at a fixed rate (700 operations per thread per 10 ms), ~24 MiB live per "
                "thread of Pareto sizes up to 4 MiB, malloc / calloc / aligned / realloc, a quarter "
                "of the frees cross-thread, an 8 MiB burst per thread every 5 s freed a second "
                "later. RSS / live is the workload's own sample (RSS over the bytes it holds, "
                "requested sizes) every 100 ms.",
    }

    def memory_notes(self, wl):
        """Explanations of peer figures that look odd, each printed only when
        this run's data shows the effect (checked against the Debian 12
        packages: glibc 2.36, jemalloc 5.3.0, gperftools 2.10, mimalloc
        2.0.9)."""
        notes = []

        def v(a, key):
            return self.value(wl, a, key)

        if wl == "sparse_large":
            g, best = v("glibc", "maxrss_kib"), self.best_peer(wl, "maxrss_kib")
            if g and best and best[0] != "glibc" and g > 2 * best[1]:
                notes.append(
                    f"glibc's peak ({g / 1024:.0f} MiB) grows with the run: each time it frees "
                    "a block it had mmapped it raises its mmap threshold to that block's size "
                    "(the dynamic threshold, up to 32 MiB), so after the first free the 1-5 MiB "
                    "buffers come from its heaps, where freed pages stay resident and get "
                    "reused. With the threshold fixed "
                    "(`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576`) its RSS at scale 1 "
                    "stayed at 42 MiB, for 12.6 s of system time instead of 1.1 s.")
            for a in self.allocs:
                thp, peak = v(a, "trace_max_thp_kib"), v(a, "maxrss_kib")
                # Hugepages that account for an RSS well above the best peer's.
                if thp and peak and best and thp > 0.5 * peak and peak > 2 * best[1]:
                    notes.append(
                        f"`{a}` had up to {thp / 1024:.0f} MiB on transparent hugepages (peak RSS "
                        f"{peak / 1024:.0f} MiB): its sparse buffers are backed by 2 MiB pages, so "
                        f"writing their first 4 KiB faults in (and zeroes) 2 MiB.")
        if wl == "fragmented_trim":
            pre, post = v("mimalloc", "rss_pretrim_kib"), v("mimalloc", "rss_trim_kib")
            if pre and post and post > 0.95 * pre:
                notes.append(
                    "mimalloc's `mi_collect(true)` gives back only pages with no live object in "
                    "them; one survivor in 16 objects of ~440 B leaves a live object every ~7 KiB, "
                    "so no 64 KiB mimalloc page is empty and nothing is returned.")
            pre, post = v("tcmalloc", "rss_pretrim_kib"), v("tcmalloc", "rss_trim_kib")
            best = self.best_peer(wl, "rss_trim_kib")
            if pre and post and best and best[0] != "tcmalloc" and post > 1.2 * best[1]:
                notes.append(
                    "tcmalloc's `ReleaseFreeMemory` returns the free spans of its page heap; "
                    "spans still holding a survivor stay with the central free lists, whole, "
                    "while glibc's `malloc_trim` also releases the free pages inside its heap.")
        if wl == "small_process":
            st = [(a, v(a, "start_anon_kib"), v(a, "hwm1_kib")) for a in self.allocs]
            st = [(a, s0, h) for a, s0, h in st if s0 is not None and h]
            if st:
                notes.append(
                    "At ~100 KiB live most of the difference is there before `main()` "
                    "allocates anything: anonymous memory at entry (the allocator's "
                    "initialisation, and what the C++ runtime allocates through it) of "
                    + ", ".join(f"{a} {s0 / 1024:.1f} MiB" for a, s0, _ in st)
                    + "; the rest of the entry RSS is mapped library pages (the allocator's "
                      "own, and what it links: jemalloc and tcmalloc pull in libstdc++, libm "
                      "and libgcc_s, which a C program would not map otherwise; JSMalloc and "
                      "mimalloc need libc alone).")
        if wl == "soak":
            bad = [(a, v(a, "misaligned")) for a in self.allocs if v(a, "misaligned")]
            for a, n in bad:
                notes.append(
                    f"`{a}` returned {n:.0f} aligned allocations that were not aligned"
                    + (" (mimalloc 2.0.9's `aligned_alloc` when the size equals an alignment of "
                       "256, 512 or 1024, a bug of that version: microsoft/mimalloc#700, fixed "
                       "in later releases)" if a == "mimalloc" else "")
                    + "; the workload counts them and goes on.")
        return notes

    def memory_markdown(self, charts, doc_dir):
        L = ["## Memory over time", ""]
        wls = self.memory_workloads()
        L.append(
            f"`bench/run` samples every run's memory from outside: `/proc/PID/statm` every "
            f"{int(RSS_INTERVAL * 1000)} ms (RSS, and anonymous RSS = resident - shared) and "
            f"`AnonHugePages` from `/proc/PID/smaps_rollup` every {RSS_INTERVAL * SMAPS_EVERY:g} s "
            f"(it walks the page tables); the traces are `{self.run['out_dir']}/rss/"
            f"<workload>.<allocator>.run<N>.csv` (`t_s,rss_kib,anon_kib,thp_kib`). The charts "
            f"draw, per allocator, the run with the median peak RSS; the sampling and NUMA "
            f"variants of JSMalloc are left out of them (same memory behaviour as `jsmalloc`). "
            f"The tables give medians of the runs"
            + (" with ± the spread (max - min) / median" if self.run["runs"] > 1 else "")
            + "; `best peer` and `jsmalloc / best` compare with glibc, jemalloc, tcmalloc and "
              "mimalloc (lower is better).")
        L.append("")
        if not wls:
            L.append("Not measured: none of " + ", ".join(f"`{w}`" for w in MEMORY_TABLES)
                     + " was run.")
            L.append("")
            return L
        for wl in wls:
            L.append(f"### {wl}")
            L.append("")
            L.append(self.MEMORY_ABOUT.get(wl, ""))
            L.append("")
            L.append(md_table(*self.memory_table(wl)))
            L.append("")
            key = f"rss_{wl}"
            if key in charts:
                L.append(f"![{wl}: RSS over time]({os.path.relpath(charts[key], doc_dir)})")
                L.append("")
            if wl == "soak" and "soak_rss_live" in charts:
                L.append(f"![soak: RSS / live over time]"
                         f"({os.path.relpath(charts['soak_rss_live'], doc_dir)})")
                L.append("")
            if wl == "idle_after_burst" and self.idle_sentence():
                L.append(self.idle_sentence())
                L.append("")
            for note in self.memory_notes(wl):
                L.append(f"- {note}")
            if self.memory_notes(wl):
                L.append("")
        if self.verdict_rows():
            L.append("### Memory verdict")
            L.append("")
            L.append("Each allocator's figure divided by the best peer's (1.00 = as small as the "
                     "best peer; below 1 is smaller). Peak RSS is `VmHWM`; the end figures are RSS "
                     "after the idle period, after the trim, with all of sparse_large's slots "
                     "live, and soak's median RSS / live.")
            L.append("")
            L.append(md_table(*self.verdict_table(), right_from=2))
            L.append("")
            L.append(self.verdict_sentence())
            L.append("")
        return L

    # ------------------------------------------------------------ targets --

    def targets(self):
        """[(name, target text, figure text, met: True/False/None)]"""
        out = []
        t = self.geo_ratio("wall_s")
        tci = self.geo_ratio_ci("wall_s")
        timed = [wl for wl in self.workloads if wl not in PACED_WORKLOADS]
        out.append(("wall time", f"geomean JSMalloc / best peer <= {TIME_TARGET:.2f}",
                    f"{fnum(t, '.3f')} (95% CI {self.ci_text(tci)}) over {len(timed)} workloads"
                    + (" (paced ones left out)" if len(timed) < len(self.workloads) else ""),
                    None if t is None else t <= TIME_TARGET))
        r = self.geo_ratio("maxrss_kib")
        rci = self.geo_ratio_ci("maxrss_kib")
        out.append(("peak RSS", f"geomean JSMalloc / best peer <= {RSS_TARGET:.2f}",
                    f"{fnum(r, '.3f')} (95% CI {self.ci_text(rci)}) over {len(self.workloads)} workloads",
                    None if r is None else r <= RSS_TARGET))
        lt = self.latency_targets()
        n_lat = len(self.latency_workloads())
        out.append(("p99.9 latency", "JSMalloc <= best peer on every latency workload",
                    f"{n_lat} workloads (see Request latency)" if lt else "not measured in this run",
                    lt[0] if lt else None))
        out.append(("throughput (latency workloads)", "JSMalloc requests/s >= best peer on every one",
                    f"{n_lat} workloads (see Request latency)" if lt else "not measured in this run",
                    lt[1] if lt else None))
        per_pair = (self.callgrind or {}).get("per_pair") or {}
        js = per_pair.get("jsmalloc")
        peers = [(p, per_pair[p]) for p in self.peers if p in per_pair]
        if js is not None and peers:
            best = min(peers, key=lambda x: x[1])
            out.append(("instructions per pair", "JSMalloc <= fewest peer (callgrind, malloc(64)+free, other 64 B objects live)",
                        f"jsmalloc {js:.1f} vs {best[0]} {best[1]:.1f}", js <= best[1]))
        else:
            out.append(("instructions per pair", "JSMalloc <= fewest peer (callgrind, malloc(64)+free, other 64 B objects live)",
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
        t_all = [(wl, self.ratio(wl, "wall_s")) for wl in self.workloads
                 if wl not in PACED_WORKLOADS]
        t_miss = [(wl, r) for wl, r in t_all if r is not None and r > TIME_TARGET]
        r_all = [(wl, self.ratio(wl, "maxrss_kib")) for wl in self.workloads]
        r_miss = [(wl, r) for wl, r in r_all if r is not None and r > RSS_TARGET]
        no_data = [wl for wl, r in r_all if r is None]
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
        for wl in self.memory_workloads():
            h, r = self.memory_table(wl)
            out += ["", f"Memory: {wl}", text_table(h, r)]
            out += [f"  note: {n}" for n in self.memory_notes(wl)]
        if self.verdict_rows():
            out += ["", "Memory verdict (figure / best peer's)",
                    text_table(*self.verdict_table(), right_from=2), "", self.verdict_sentence()]
            if self.idle_sentence():
                out += ["", self.idle_sentence()]
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
        aa = self.aa_rows()
        if aa:
            out += ["", "A/A check (jsmalloc-again / jsmalloc)", text_table(aa[0], aa[1]), self.aa_sentence()]
        if self.has_fork():
            out += ["", "fork (fork_server)", text_table(*self.fork_table())]
        lw = self.latency_workloads()
        for wl in lw:
            out += ["", f"Request latency: {wl}", text_table(*self.latency_table(wl))]
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
            made["ratios"] = self.ratios_chart(chart_dir, data_dir)
        if "glibc" in self.allocs and len(self.allocs) > 1:
            made["times_vs_glibc"] = self.times_chart(chart_dir, data_dir)
        made.update(self.rss_charts(chart_dir, data_dir))
        for wl in self.latency_workloads():
            made[f"latency_{wl}"] = self.latency_chart(wl, chart_dir, data_dir)
        return {name: png for name, png in made.items() if png}

    def ratios_chart(self, chart_dir, data_dir):
        """JSMalloc / best peer, wall time and peak RSS, per workload and
        their geomeans."""
        dat = os.path.join(data_dir, "ratios.dat")
        rows = [(wl, [self.ratio(wl, "wall_s"), self.ratio(wl, "maxrss_kib")]) for wl in self.workloads]
        rows.append(("geomean", [self.geo_ratio("wall_s"), self.geo_ratio("maxrss_kib")]))
        write_dat(dat, "workload time_ratio rss_ratio", rows)
        # Only paced workloads (no geomean of wall-time ratios): no wall-time
        # ratio to draw (gnuplot rejects an all-NaN histogram column), so
        # draw RSS alone.
        has_time = rows[-1][1][0] is not None
        rss = "title 'peak RSS' lc rgb '#ff7f0e'"
        bars = ([("2:xtic(1)", "title 'wall time' lc rgb '#1f77b4'"), ("3", rss)]
                if has_time else [("3:xtic(1)", rss)])
        return self._chart(
            chart_dir, data_dir, "ratios", "1100,520",
            "JSMalloc / best peer (glibc, jemalloc, tcmalloc, mimalloc) per workload: below 1 is better",
            HISTOGRAM + ["set ylabel 'ratio'", "set key top left",
                         hline(1, "dt 2 lw 2 lc rgb '#333333'"),
                         hline(TIME_TARGET, "dt 3 lw 1 lc rgb '#1f77b4'")],
            columns(dat, bars))

    def times_chart(self, chart_dir, data_dir):
        """Every configuration's wall time over glibc's, per workload."""
        dat = os.path.join(data_dir, "times_vs_glibc.dat")

        def vs_glibc(wl, a):
            g, v = self.value(wl, "glibc", "wall_s"), self.value(wl, a, "wall_s")
            return v / g if v is not None and g else None
        write_dat(dat, "workload " + " ".join(self.allocs),
                  [(wl, [vs_glibc(wl, a) for a in self.allocs]) for wl in self.workloads])
        return self._chart(
            chart_dir, data_dir, "times_vs_glibc", "1200,520",
            "Wall time normalised to glibc (median of runs): below 1 is faster than glibc",
            HISTOGRAM + ["set key top left horizontal", "set ylabel 'time / glibc time'",
                         hline(1, "dt 2 lw 1 lc rgb '#333333'")],
            columns(dat, [(f"{i + 2}" + (":xtic(1)" if i == 0 else ""), f"title '{a}'")
                          for i, a in enumerate(self.allocs)]))

    def _chart(self, chart_dir, data_dir, name, size, title, settings, plots, png_name=None):
        """One gnuplot chart: writes <data_dir>/<name>.gp, which draws
        <chart_dir>/<png_name, else name.png> at size ("width,height"
        pixels) with the title, the settings (gnuplot lines) and the plot
        items, and runs it; returns the PNG's path, None where gnuplot
        failed. A title of two lines goes in double quotes, where gnuplot
        reads \\n as a line break."""
        png = os.path.join(chart_dir, png_name or f"{name}.png")
        title = ('"' + title.replace("\n", "\\n") + '"') if "\n" in title else f"'{title}'"
        lines = ([f'set terminal pngcairo size {size} noenhanced font "sans,10"',
                  f"set output '{png}'", f"set title {title}"]
                 + settings + [f"plot {', '.join(plots)}"])
        script = "\n" + "".join(line + "\n" for line in lines)
        return png if self._gnuplot(script, data_dir, name) else None

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
            f"(a shuffled order for each repetition and workload, seeded: a fixed rotation kept each "
            f"allocator behind the same predecessor, which on this VM biased the run that followed "
            f"a large one), and the tables show the median of the runs.")
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
        L.append(
            f"- Memory over time: the runner samples every run's RSS from `/proc/PID/statm` every "
            f"{int(RSS_INTERVAL * 1000)} ms and `AnonHugePages` every {RSS_INTERVAL * SMAPS_EVERY:g} s "
            f"(see [Memory over time](#memory-over-time)). `idle_after_burst`, `fragmented_trim` and "
            f"`soak` are paced (an idle period, pauses around the trim, a fixed request rate): "
            f"their wall time is shown but gets no ratio and is left out of the wall-time "
            f"geomeans.")
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
        L.extend(self.latency_markdown(charts, doc_dir))
        L.append("## fork")
        L.append("")
        if self.has_fork():
            L.append(WORKLOAD_NOTES["fork_server"] + ". The child's private dirty memory (from its "
                     "`smaps_rollup` just before it exits) is what it wrote plus the pages the "
                     "parent copied away from under it while it lived (copy-on-write); medians of "
                     "the runs, ± the spread.")
            L.append("")
            L.append(md_table(*self.fork_table()))
        else:
            L.append("Not measured: `fork_server` was not run.")
        L.append("")
        aa = self.aa_rows()
        L.append("## Noise: the A/A check")
        L.append("")
        if aa:
            L.append("Every ratio above carries a 95% confidence interval: the ratio is taken per "
                     "repetition (JSMalloc's run against the best peer's run of the same repetition, "
                     "in the same shuffled round) and the interval is Student's t on the logs of "
                     "those ratios; `verdict` is `better` or `worse` only when the whole interval is "
                     "below or above 1, and `within noise` otherwise. To check that the intervals are "
                     "honest, `jsmalloc-again` runs the default configuration a second time as if it "
                     "were another allocator: its ratio to `jsmalloc` is 1 by construction.")
            L.append("")
            L.append(md_table(aa[0], aa[1]))
            L.append("")
            L.append(self.aa_sentence())
        else:
            L.append("Not measured: the run did not include `jsmalloc` and `jsmalloc-again`.")
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
        if "rss_steady_churn" in charts:
            L.append(f"![steady_churn RSS over time]({os.path.relpath(charts['rss_steady_churn'], doc_dir)})")
            L.append("")
        L.extend(self.memory_markdown(charts, doc_dir))
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
