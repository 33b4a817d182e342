#!/usr/bin/env python3
"""bench/lib/benchreport.py's statistics on synthetic runs: the paired
confidence intervals behind every `verdict`, the A/A check, and the latency
and fork tables. Usage: benchreport_test.py BENCH_LIB_DIR"""
import math
import sys
import unittest

sys.path.insert(0, sys.argv.pop(1) if len(sys.argv) > 1 else "bench/lib")
import benchreport as br  # noqa: E402

ALLOCS = ["glibc", "tcmalloc", "jsmalloc", "jsmalloc-again"]


def make_report(rows, workloads):
    med = {}
    for wl in workloads:
        for a in ALLOCS:
            rs = [r for r in rows if r["workload"] == wl and r["allocator"] == a]
            if not rs:
                continue
            m = {}
            for k in rs[0]:
                vals = [r[k] for r in rs if isinstance(r[k], float)]
                if vals:
                    vals.sort()
                    m[k] = vals[len(vals) // 2]
            spread = {}
            for k, v in m.items():
                vals = [r[k] for r in rs]
                if len(vals) > 1 and v:
                    spread[k] = (max(vals) - min(vals)) / v
            m["spread"] = spread
            med[(wl, a)] = m
    run = {"allocs": ALLOCS, "workloads": workloads, "runs": 4, "quick": False, "scale": 1.0,
           "date": "test", "errors": []}
    return br.Report(run, {}, rows, med, None, None, ["glibc", "tcmalloc"])


def row(wl, alloc, run, **kv):
    r = {"workload": wl, "allocator": alloc, "run": run, "failed": ""}
    r.update({k: float(v) for k, v in kv.items()})
    return r


class Stats(unittest.TestCase):
    def test_log_ci_brackets_the_geomean(self):
        lo, hi = br.log_ci([1.0, 1.1, 0.9, 1.05])
        g = br.geomean([1.0, 1.1, 0.9, 1.05])
        self.assertLess(lo, g)
        self.assertGreater(hi, g)
        # Student t with 3 degrees of freedom: wider than 1.96 sigma.
        logs = [math.log(v) for v in (1.0, 1.1, 0.9, 1.05)]
        mean = sum(logs) / 4
        sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 3)
        self.assertAlmostEqual(math.log(hi) - mean, 3.18 * sd / 2, places=6)

    def test_log_ci_needs_two_samples(self):
        self.assertIsNone(br.log_ci([1.2]))
        self.assertIsNone(br.log_ci([]))

    def test_identical_ratios_give_a_point(self):
        lo, hi = br.log_ci([0.8, 0.8, 0.8])
        self.assertAlmostEqual(lo, 0.8)
        self.assertAlmostEqual(hi, 0.8)


class Verdicts(unittest.TestCase):
    def setUp(self):
        rows = []
        # fast: jsmalloc 20% faster than tcmalloc in every repetition, with
        # drift between repetitions that pairing cancels.
        for rep, drift in enumerate([1.0, 1.3, 0.8, 1.1], start=1):
            rows.append(row("fast", "glibc", rep, wall_s=3.0 * drift, maxrss_kib=1000))
            rows.append(row("fast", "tcmalloc", rep, wall_s=1.0 * drift, maxrss_kib=1200))
            rows.append(row("fast", "jsmalloc", rep, wall_s=0.8 * drift, maxrss_kib=1100))
            rows.append(row("fast", "jsmalloc-again", rep, wall_s=0.8 * drift, maxrss_kib=1100))
        # noisy: jsmalloc and tcmalloc alternate ahead.
        for rep, (t, j) in enumerate([(1.0, 0.7), (1.0, 1.3), (1.0, 0.8), (1.0, 1.25)], start=1):
            rows.append(row("noisy", "glibc", rep, wall_s=5.0, maxrss_kib=1000))
            rows.append(row("noisy", "tcmalloc", rep, wall_s=t, maxrss_kib=1000))
            rows.append(row("noisy", "jsmalloc", rep, wall_s=j, maxrss_kib=1000))
            rows.append(row("noisy", "jsmalloc-again", rep, wall_s=j * (1.4 if rep == 2 else 1.0),
                            maxrss_kib=1000))
        self.rep = make_report(rows, ["fast", "noisy"])

    def test_pairing_cancels_drift(self):
        lo, hi = self.rep.ratio_ci("fast", "wall_s")
        self.assertAlmostEqual(lo, 0.8)
        self.assertAlmostEqual(hi, 0.8)
        self.assertEqual(self.rep.verdict_word((lo, hi)), "better")

    def test_noise_is_called_noise(self):
        ci = self.rep.ratio_ci("noisy", "wall_s")
        self.assertLess(ci[0], 1.0)
        self.assertGreater(ci[1], 1.0)
        self.assertEqual(self.rep.verdict_word(ci), "within noise")
        self.assertEqual(self.rep.verdict_word((1.1, 1.3)), "worse")
        self.assertEqual(self.rep.verdict_word(None), "spread unknown")

    def test_best_peer_is_chosen_by_median(self):
        self.assertEqual(self.rep.best_peer("fast", "wall_s")[0], "tcmalloc")
        self.assertEqual(self.rep.best_peer("fast", "maxrss_kib")[0], "glibc")

    def test_metric_table_has_ci_and_verdict(self):
        headers, rows = self.rep.metric_table("wall_s", 1, ".2f")
        self.assertEqual(headers[-2:], ["95% CI", "verdict"])
        fast = next(r for r in rows if r[0] == "fast")
        self.assertEqual(fast[-1], "better")
        self.assertEqual(fast[-2], "0.80-0.80")
        self.assertTrue(rows[-1][0].startswith("geomean"))

    def test_aa_check_flags_only_what_excludes_one(self):
        headers, rows, wrong, n = self.rep.aa_rows()
        self.assertEqual(n, 4)  # 2 workloads x (time, RSS)
        self.assertEqual(wrong, [])  # "noisy" time: 1.4 once, the interval still holds 1
        self.assertIn("contain 1", self.rep.aa_sentence())


class Tables(unittest.TestCase):
    def setUp(self):
        rows = []
        for rep in (1, 2, 3):
            for a, scale in (("glibc", 3.0), ("tcmalloc", 1.0), ("jsmalloc", 0.9), ("jsmalloc-again", 0.9)):
                rows.append(row("request_loop", a, rep, wall_s=1.0 * scale, maxrss_kib=1000,
                                lat_requests=1e6, lat_seconds=1.0 * scale, lat_rps=1e6 / scale,
                                lat_p50_ns=1000 * scale, lat_p90_ns=2000 * scale, lat_p99_ns=4000 * scale,
                                lat_p999_ns=9000 * scale, lat_max_ns=1e6 * scale))
                rows.append(row("fork_server", a, rep, wall_s=1.0, maxrss_kib=1000,
                                fork_seconds=0.5 * scale, fork_pause_p50_us=400 * scale,
                                fork_pause_max_us=4000, fork_child_p50_ms=1.5 * scale,
                                fork_child_max_ms=6.0, fork_child_dirty_kib=7000 * scale,
                                fork_parent_faults=1e5, fork_churn_mops=2.0))
        self.rep = make_report(rows, ["request_loop", "fork_server"])

    def test_latency_table(self):
        self.assertEqual(self.rep.latency_workloads(), ["request_loop"])
        headers, rows = self.rep.latency_table("request_loop")
        by = {r[0]: r for r in rows}
        # Throughput: the best peer is the fastest (tcmalloc), ratio above 1 is better.
        self.assertEqual(by["requests/s (M)"][-2], "tcmalloc")
        self.assertAlmostEqual(float(by["requests/s (M)"][-1]), 1 / 0.9, places=3)
        self.assertAlmostEqual(float(by["p99.9 (us)"][-1]), 0.9, places=3)
        met = self.rep.latency_targets()
        self.assertTrue(met[0] and met[1])

    def test_fork_table(self):
        self.assertTrue(self.rep.has_fork())
        headers, rows = self.rep.fork_table()
        by = {r[0]: r for r in rows}
        label = "child private dirty, mean (MiB)"
        self.assertEqual(by[label][-2], "tcmalloc")
        self.assertAlmostEqual(float(by[label][-1]), 0.9, places=3)


if __name__ == "__main__":
    unittest.main(verbosity=1)
