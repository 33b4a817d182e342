#!/usr/bin/env python3
"""USDT probe tests: runs bpftrace (as root) on a scenario of
probe_workload.cc and checks the events and their arguments, or runs a
shipped probes/*.bt script on a workload and checks its summary.

  probe_test.py --workload STATIC --shared-workload SHARED --churn CHURN \\
                --lib LIBJSMALLOC --trace JSMALLOC_TRACE --scripts PROBES_DIR TEST

TEST is a probe name (span_alloc, ...), one of the extra checks below
(backend_grow_legacy, release_legacy, sample_alloc_real, shared_library,
list, wrapper_pid) or script.NAME for probes/NAME.bt.

Per-probe tests use `bpftrace -c` on the statically linked workload, whose
executable carries the probes. Without BPF (not root, no bpftrace, BPF
refused) a test prints why and fails; with JSMALLOC_TEST_PROBE_TESTS_ALLOW_SKIP=1
it is skipped (exit 77) instead.
"""
import argparse
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

MiB = 1 << 20
HUGEPAGE = 2 * MiB

# Every probe and its arguments, in order (docs/probes.md documents them).
PROBES = {
    "span_alloc": ["cl", "pages", "addr", "objects", "node"],
    "span_return": ["cl", "pages", "addr", "node"],
    "central_refill": ["cl", "requested", "got"],
    "central_return": ["cl", "count", "spans"],
    "transfer_overflow": ["cl", "count", "used", "capacity"],
    "cpu_cache_resize": ["cpu", "cl", "old_cap", "new_cap"],
    "sample_alloc": ["ptr", "requested", "allocated"],
    "sample_free": ["ptr", "size"],
    "backend_grow": ["bytes", "addr", "node"],
    "hugepage_taken": ["addr", "count", "node"],
    "hugepage_filled": ["addr", "broken", "node"],
    "hugepage_broken": ["addr", "used", "released", "hp_pages", "first", "node"],
    "hugepage_released": ["addr", "count", "node"],
    "hugepage_collapsed": ["addr", "result", "node"],
    "region_created": ["addr", "hugepages", "node"],
    "region_freed": ["addr", "hugepages", "node"],
    "hugecache_hit": ["addr", "count", "node"],
    "hugecache_miss": ["addr", "count", "node"],
    "hugecache_release": ["addr", "count", "node"],
    "release": ["kind", "requested", "released", "duration_ns", "node"],
    "background_cycle": ["released", "duration_ns"],
    "memory_limit_hit": ["limit", "requested", "hard", "backed", "refused"],
}


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Event(dict):
    __getattr__ = dict.__getitem__


def bpf_unavailable_reason():
    if os.geteuid() != 0:
        return "bpftrace needs root (running as uid %d)" % os.geteuid()
    if shutil.which("bpftrace") is None:
        return "bpftrace is not installed (Debian: apt-get install bpftrace)"
    try:
        r = subprocess.run(["bpftrace", "-e", 'BEGIN { printf("bpf-ok\\n"); exit(); }'],
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "a trivial bpftrace program did not finish in 60 s"
    if "bpf-ok" not in r.stdout:
        return "BPF refused a trivial program: " + (r.stderr.strip()[-400:] or "no output")
    return None


class Run:
    """The output of one traced run: events by probe, EXPECT values, text."""

    def __init__(self, text):
        self.text = text
        self.events = {name: [] for name in PROBES}
        self.expect = {}
        for line in text.splitlines():
            f = line.split()
            if len(f) >= 3 and f[0] == "EV" and f[1] in PROBES:
                names = ["pid"] + PROBES[f[1]]
                vals = [int(x) for x in f[2:]]
                if len(vals) == len(names):
                    self.events[f[1]].append(Event(zip(names, vals)))
            elif len(f) == 2 and f[0] == "EXPECT" and "=" in f[1]:
                k, v = f[1].split("=", 1)
                self.expect[k] = int(v)
        if "pid" in self.expect:
            # Traced by library file (the wrapper's -c mode): keep the workload's events.
            for name in self.events:
                self.events[name] = [e for e in self.events[name] if e.pid == self.expect["pid"]]

    def ev(self, name, **match):
        return [e for e in self.events[name] if all(e[k] == v for k, v in match.items())]

    def x(self, key):
        check(key in self.expect, "the workload did not print EXPECT %s" % key)
        return self.expect[key]


def program(probes, target):
    lines = []
    for name in probes:
        n = len(PROBES[name])
        fmt = " ".join(["%lu"] * (n + 1))
        args = ", ".join(["pid"] + ["arg%d" % i for i in range(n)])
        lines.append('usdt:%s:jsmalloc:%s { printf("EV %s %s\\n", %s); }' % (target, name, name, fmt, args))
    return "\n".join(lines)


def bpftrace_env(extra):
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("BPFTRACE_PERF_RB_PAGES", "1024")  # room for bursts of events
    return env


def finish(r, scenario, what):
    text = r.stdout + "\n" + r.stderr
    if r.returncode != 0 or ("DONE " + scenario) not in r.stdout:
        print(text[-6000:])
        raise Failure("%s exited with status %d (scenario %s %s)" % (
            what, r.returncode, scenario, "finished" if "DONE" in r.stdout else "did not finish"))
    lost = re.findall(r"Lost (\d+) events", text)
    check(not lost, "bpftrace lost %s events" % "+".join(lost))
    return Run(r.stdout)


def trace_c(args, probes, scenario, env=None, binary=None):
    """bpftrace -c on the statically linked workload (probes in the executable)."""
    binary = binary or args.workload
    cmd = ["bpftrace", "-e", program(probes, binary), "-c", "%s %s" % (binary, scenario)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=100, env=bpftrace_env(env or {}))
    return finish(r, scenario, "bpftrace -c")


def trace_wrapper_c(args, probes, scenario, env=None):
    """probes/jsmalloc-trace -c on the workload linked with libjsmalloc.so."""
    cmd = [args.trace, "-e", program(probes, "*"), "-c", "%s %s" % (args.shared_workload, scenario)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=100, env=bpftrace_env(env or {}))
    return finish(r, scenario, "jsmalloc-trace -c")


def aligned(addr):
    return addr != 0 and addr % HUGEPAGE == 0


# --- Per-probe checks ----------------------------------------------------------

SPAN_PROBES = ["span_alloc", "span_return", "central_refill", "central_return", "transfer_overflow"]


def check_span_alloc(run):
    cl, pages = run.x("cl"), run.x("class_pages")
    evs = run.ev("span_alloc", cl=cl)
    check(len(evs) >= run.x("objects") // run.x("class_objects"),
          "span_alloc fired %d times for class %d, want >= %d spans" % (
              len(evs), cl, run.x("objects") // run.x("class_objects")))
    mine = run.ev("span_alloc", addr=run.x("span_addr"))
    check(len(mine) >= 1, "no span_alloc for the span at %#x" % run.x("span_addr"))
    e = mine[-1]
    check(e.cl == cl, "span_alloc class %d, want %d" % (e.cl, cl))
    check(e.pages == pages, "span_alloc pages %d, want %d" % (e.pages, pages))
    check(e.pages * run.x("page_size") == run.x("span_bytes"), "span_alloc pages disagree with the span's bytes")
    check(e.objects == run.x("class_objects"), "span_alloc objects %d, want %d" % (e.objects, run.x("class_objects")))
    check(e.node == 0, "span_alloc node %d" % e.node)
    for e in run.events["span_alloc"]:
        check(e.cl > 0 and e.pages > 0 and e.addr % run.x("page_size") == 0,
              "span_alloc with bad arguments: %s" % dict(e))
    return "%d span_alloc events for class %d; span %#x: %d pages, %d objects" % (
        len(evs), cl, run.x("span_addr"), pages, run.x("class_objects"))


def check_span_return(run):
    cl = run.x("cl")
    evs = run.ev("span_return", cl=cl)
    spans = run.x("objects") // run.x("class_objects")
    check(len(evs) >= spans, "span_return fired %d times for class %d, want >= %d" % (len(evs), cl, spans))
    mine = run.ev("span_return", addr=run.x("span_addr"))
    check(len(mine) >= 1, "no span_return for the span at %#x" % run.x("span_addr"))
    e = mine[-1]
    check(e.cl == cl and e.pages == run.x("class_pages") and e.node == 0,
          "span_return arguments %s, want class %d pages %d" % (dict(e), cl, run.x("class_pages")))
    allocated = {(a.addr) for a in run.events["span_alloc"]}
    returned = {(r.addr) for r in run.ev("span_return", cl=cl)}
    check(returned <= allocated, "span_return of spans never allocated: %d" % len(returned - allocated))
    return "%d span_return events for class %d, every one of a traced span_alloc" % (len(evs), cl)


def check_central_refill(run):
    cl = run.x("cl")
    evs = run.ev("central_refill", cl=cl)
    check(evs, "no central_refill for class %d" % cl)
    for e in evs:
        check(0 < e.got <= e.requested, "central_refill got %d of %d" % (e.got, e.requested))
    got = sum(e.got for e in evs)
    check(got >= run.x("objects"), "central_refill handed out %d objects, want >= %d" % (got, run.x("objects")))
    return "%d central_refill events for class %d, %d objects" % (len(evs), cl, got)


def check_central_return(run):
    cl = run.x("cl")
    evs = run.ev("central_return", cl=cl)
    check(evs, "no central_return for class %d" % cl)
    check(all(e.count > 0 for e in evs), "central_return with no objects")
    n = sum(e.count for e in evs)
    spans = sum(e.spans for e in evs)
    check(n >= run.x("objects"), "central_return got back %d objects, want >= %d" % (n, run.x("objects")))
    want = run.x("objects") // run.x("class_objects")
    check(spans >= want, "central_return emptied %d spans, want >= %d" % (spans, want))
    check(spans == len(run.ev("span_return", cl=cl)), "central_return spans disagree with span_return events")
    return "%d central_return events for class %d: %d objects, %d spans emptied" % (len(evs), cl, n, spans)


def check_transfer_overflow(run):
    cl = run.x("cl")
    evs = run.ev("transfer_overflow", cl=cl)
    check(evs, "no transfer_overflow for class %d" % cl)
    for e in evs:
        check(e.count > 0 and e.capacity > 0 and e.used + e.count > e.capacity,
              "transfer_overflow that fits: %s" % dict(e))
    return "%d transfer_overflow events for class %d (capacity %d objects)" % (len(evs), cl, evs[0].capacity)


def check_backend_grow(run, legacy=False):
    evs = run.events["backend_grow"]
    check(evs, "no backend_grow")
    for e in evs:
        check(e.bytes >= HUGEPAGE and e.bytes % HUGEPAGE == 0, "backend_grow of %d bytes" % e.bytes)
        check(aligned(e.addr), "backend_grow address %#x not 2 MiB-aligned" % e.addr)
        check(e.node == 0, "backend_grow node %d" % e.node)
    total = sum(e.bytes for e in evs)
    check(total >= 32 * MiB, "backend_grow mapped %d bytes for 32 MiB of objects" % total)
    if legacy:
        check(not run.events["hugepage_taken"], "the legacy heap fired hugepage_taken")
    return "%d backend_grow events, %d MiB mapped, first %d MiB at %#x" % (
        len(evs), total // MiB, evs[0].bytes // MiB, evs[0].addr)


def check_hugepage_taken(run):
    evs = run.events["hugepage_taken"]
    check(all(aligned(e.addr) and e.count >= 1 and e.node == 0 for e in evs),
          "hugepage_taken with bad arguments")
    n = sum(e.count for e in evs)
    check(n >= 16, "hugepage_taken reported %d hugepages for 32 MiB of small objects" % n)
    return "%d hugepage_taken events, %d hugepages" % (len(evs), n)


def check_hugepage_filled(run):
    evs = run.events["hugepage_filled"]
    check(len(evs) >= 15, "hugepage_filled fired %d times for 32 MiB of small objects" % len(evs))
    taken = {e.addr for e in run.events["hugepage_taken"]}
    for e in evs:
        check(aligned(e.addr) and e.broken == 0 and e.node == 0, "hugepage_filled arguments %s" % dict(e))
        check(e.addr in taken, "hugepage_filled for %#x, never taken" % e.addr)
    return "%d hugepage_filled events, all intact hugepages taken in this run" % len(evs)


def check_hugepage_broken(run):
    hp_pages = HUGEPAGE // run.x("page_size")
    first = run.ev("hugepage_broken", first=1)
    check(len(first) >= 8, "hugepage_broken (first) fired %d times" % len(first))
    for e in run.events["hugepage_broken"]:
        check(aligned(e.addr), "hugepage_broken address %#x" % e.addr)
        check(e.hp_pages == hp_pages, "hugepage_broken pages per hugepage %d, want %d" % (e.hp_pages, hp_pages))
        check(0 < e.used < hp_pages and e.released > 0 and e.used + e.released <= hp_pages,
              "hugepage_broken used %d released %d of %d" % (e.used, e.released, hp_pages))
        check(e.node == 0, "hugepage_broken node")
    half = [e for e in first if e.used == hp_pages // 2]
    check(len(half) * 2 >= len(first), "only %d of %d broken hugepages were half used" % (len(half), len(first)))
    return "%d hugepages broken, %d of them exactly half used (%d of %d pages)" % (
        len(first), len(half), hp_pages // 2, hp_pages)


def check_hugepage_collapsed(run):
    evs = run.events["hugepage_collapsed"]
    check(evs, "no hugepage_collapsed with JSMALLOC_COLLAPSE=1")
    broken = {e.addr for e in run.ev("hugepage_broken", first=1)}
    refilled = {e.addr for e in run.ev("hugepage_filled", broken=1)}
    for e in evs:
        check(aligned(e.addr) and e.result in (0, 1) and e.node == 0, "hugepage_collapsed %s" % dict(e))
        check(e.addr in broken and e.addr in refilled, "collapse of %#x, not broken and refilled" % e.addr)
    ok = sum(e.result for e in evs)
    return "%d hugepage_collapsed events (%d collapsed, %d refused), all of broken, refilled hugepages" % (
        len(evs), ok, len(evs) - ok)


def check_hugepage_released(run):
    evs = run.events["hugepage_released"]
    check(evs, "no hugepage_released")
    check(all(aligned(e.addr) and e.count >= 1 and e.node == 0 for e in evs), "hugepage_released arguments")
    broken = {e.addr for e in run.events["hugepage_broken"]}
    covered = [b for b in broken if any(e.addr <= b < e.addr + e.count * HUGEPAGE for e in evs)]
    check(covered, "no broken hugepage was released")
    return "%d hugepage_released events, %d hugepages, covering %d of %d broken hugepages" % (
        len(evs), sum(e.count for e in evs), len(covered), len(broken))


def check_region(run, which):
    created = run.events["region_created"]
    freed = run.events["region_freed"]
    block = run.x("block_addr")
    mine = [e for e in created if e.addr <= block < e.addr + e.hugepages * HUGEPAGE]
    check(len(mine) == 1, "%d region_created events hold the block at %#x" % (len(mine), block))
    r = mine[0]
    check(aligned(r.addr) and r.hugepages == 512 and r.node == 0, "region_created arguments %s" % dict(r))
    if which == "created":
        return "region_created at %#x, %d hugepages, holding the block at %#x" % (r.addr, r.hugepages, block)
    f = run.ev("region_freed", addr=r.addr)
    check(len(f) == 1 and f[0].hugepages == r.hugepages and f[0].node == 0,
          "region_freed for %#x: %s" % (r.addr, [dict(e) for e in freed]))
    taken = [e for e in run.events["hugepage_taken"] if r.addr <= e.addr < r.addr + r.hugepages * HUGEPAGE]
    check(len(taken) >= 2, "the 3 MiB block took %d region hugepages from the OS" % len(taken))
    return "region_freed at %#x, %d hugepages (2 of them taken for the block)" % (r.addr, r.hugepages)


def check_hugecache(run, which):
    n = run.x("hugepages")
    if which == "miss":
        evs = run.ev("hugecache_miss", addr=run.x("miss_addr"))
        check(len(evs) >= 1 and evs[0].count == n and evs[0].node == 0,
              "hugecache_miss for the 4 MiB block: %s" % [dict(e) for e in run.events["hugecache_miss"]])
        return "hugecache_miss at %#x for %d hugepages" % (run.x("miss_addr"), n)
    if which == "hit":
        evs = run.ev("hugecache_hit", addr=run.x("hit_addr"))
        check(len(evs) >= 1 and evs[0].count == n and evs[0].node == 0,
              "hugecache_hit for the reused 4 MiB block: %s" % [dict(e) for e in run.events["hugecache_hit"]])
        check(run.x("hit_addr") == run.x("miss_addr"), "the second block did not reuse the hugepages")
        return "hugecache_hit at %#x for %d hugepages" % (run.x("hit_addr"), n)
    evs = run.events["hugecache_release"]
    check(evs, "no hugecache_release")
    check(all(aligned(e.addr) and e.count >= 1 and e.node == 0 for e in evs), "hugecache_release arguments")
    total = sum(e.count for e in evs) * HUGEPAGE
    check(0 < total <= run.x("released"), "hugecache_release %d bytes, release API %d" % (total, run.x("released")))
    hp = [e for e in run.events["hugepage_released"] if any(e.addr == c.addr for c in evs)]
    check(len(hp) == len(evs), "hugecache_release without a matching hugepage_released")
    return "%d hugecache_release events, %d MiB (API released %d MiB)" % (len(evs), total // MiB, run.x("released") // MiB)


def check_release(run):
    evs = run.ev("release", kind=0, requested=run.x("release_request"))
    check(len(evs) == 1, "release events for the 64 MiB request: %s" % [dict(e) for e in run.events["release"]])
    e = evs[0]
    check(e.released == run.x("released"), "release reported %d bytes, the API returned %d" % (e.released, run.x("released")))
    check(e.released > 0 and 0 < e.duration_ns < 10 ** 10 and e.node == 0, "release arguments %s" % dict(e))
    for x in run.events["release"]:
        check(x.kind in (0, 1, 2), "release kind %d" % x.kind)
    return "release kind 0: requested %d MiB, released %d KiB in %d us" % (
        e.requested // MiB, e.released // 1024, e.duration_ns // 1000)


def check_background_cycle(run):
    evs = run.events["background_cycle"]
    check(len(evs) >= 1, "no background_cycle in 2.3 s")
    check(all(0 < e.duration_ns < 10 ** 10 for e in evs), "background_cycle durations %s" % [e.duration_ns for e in evs])
    check(any(e.released > 0 for e in evs), "no background cycle released memory (64 MiB free, rate 256 MiB/s)")
    rel = [e for e in run.events["release"] if e.kind == 0 and e.released > 0]
    check(rel, "the background release rate fired no release probe")
    return "%d background cycles, released %s bytes, durations %s us" % (
        len(evs), [e.released for e in evs], [e.duration_ns // 1000 for e in evs])


def check_memory_limit_hit(run):
    run.x("page_size")
    soft = run.ev("memory_limit_hit", limit=run.x("soft_limit"))
    check(soft, "no memory_limit_hit under the soft limit")
    for e in soft:
        check(e.hard == 0 and e.refused == 0 and e.backed > e.limit and e.requested > 0 and
              e.requested % run.x("page_size") == 0, "soft memory_limit_hit %s" % dict(e))
    check(any(e.requested == MiB for e in soft), "no soft memory_limit_hit for a 1 MiB block")
    hard = run.ev("memory_limit_hit", limit=run.x("hard_limit"))
    check(hard, "no memory_limit_hit under the hard limit")
    refused = [e for e in hard if e.refused == 1]
    # The allocator may retry a refused growth (after flushing caches), so a
    # failed malloc can fire more than one refusal.
    check(run.x("refused") >= 1 and len(refused) >= run.x("refused") and
          all(e.hard == 1 and e.requested == MiB and e.backed > e.limit for e in refused),
          "hard memory_limit_hit %s, %d allocations refused" % ([dict(e) for e in hard], run.x("refused")))
    return "%d soft hits (limit %d MiB, allowed), %d hard refusals of 1 MiB (limit %d MiB) for %d failed malloc" % (
        len(soft), run.x("soft_limit") // MiB, len(refused), run.x("hard_limit") // MiB, run.x("refused"))


def check_cpu_cache_resize(run):
    """The per-CPU caches grow on their first misses: real resize events."""
    evs = run.events["cpu_cache_resize"]
    ncpu = os.cpu_count() or 1
    grows = [e for e in evs if e.new_cap > e.old_cap]
    check(grows, "no cpu_cache_resize growth event (events %s)" % [dict(e) for e in evs[:5]])
    check(all(0 <= e.cpu < max(ncpu, 1024) and 1 <= e.cl < 256 and e.old_cap != e.new_cap for e in evs),
          "bad cpu_cache_resize arguments %s" % [dict(e) for e in evs[:5]])
    first = grows[0]
    return "%d resize events, e.g. cpu %d class %d: %d -> %d" % (
        len(evs), first.cpu, first.cl, first.old_cap, first.new_cap)


def check_helpers(run, which):
    if which == "cpu_cache_resize":
        evs = run.events["cpu_cache_resize"]
        check([(e.cpu, e.cl, e.old_cap, e.new_cap) for e in evs] == [(1, 7, 16, 48)],
              "cpu_cache_resize events %s" % [dict(e) for e in evs])
        return "cpu_cache_resize(cpu 1, class 7, 16 -> 48)"
    ptr = run.x("ptr")
    if which == "sample_alloc":
        evs = run.ev("sample_alloc", ptr=ptr)
        check(len(evs) == 1 and evs[0].requested == 1000 and evs[0].allocated == run.x("allocated"),
              "sample_alloc events %s" % [dict(e) for e in run.events["sample_alloc"]])
        return "sample_alloc(%#x, 1000, %d)" % (ptr, run.x("allocated"))
    evs = run.ev("sample_free", ptr=ptr)
    check(len(evs) == 1 and evs[0].size == 1000, "sample_free events %s" % [dict(e) for e in run.events["sample_free"]])
    return "sample_free(%#x, 1000)" % ptr


def check_numa_node(run):
    check(run.x("node_small") == 1 and run.x("node_big") == 1,
          "the workload's memory is not node 1's: small %d, big %d" % (run.x("node_small"), run.x("node_big")))
    cl = run.x("cl")
    spans = run.ev("span_alloc", cl=cl)
    check(len(spans) >= 1, "no span_alloc for class %d" % cl)
    check(all(e.node == 1 for e in spans), "span_alloc nodes %s, want 1" % sorted({e.node for e in spans}))
    returned = run.ev("span_return", cl=cl)
    check(len(returned) >= 1 and all(e.node == 1 for e in returned),
          "span_return nodes %s, want 1" % sorted({e.node for e in returned}))
    misses = run.ev("hugecache_miss", node=1)
    check(len(misses) >= 1, "no hugecache_miss with node 1 (nodes seen: %s)" % sorted(
        {e.node for e in run.events["hugecache_miss"]}))
    rel = run.ev("release", node=1)
    check(len(rel) >= 1, "no release event with node 1 (nodes seen: %s)" % sorted(
        {e.node for e in run.events["release"]}))
    return "%d span_alloc, %d span_return, %d hugecache_miss and %d release events on node 1" % (
        len(spans), len(returned), len(misses), len(rel))


def check_sample_real(run):
    allocs = run.ev("sample_alloc", requested=run.x("size"))
    # One sample per 64 KiB on average: ~610 for 40 MB; accept a wide band.
    check(len(allocs) >= 200, "%d samples of 10000-byte blocks, want ~600" % len(allocs))
    check(all(e.allocated >= e.requested and e.ptr != 0 for e in allocs), "sample_alloc allocated < requested")
    frees = {e.ptr for e in run.events["sample_free"] if e.size == run.x("size")}
    unmatched = [e for e in allocs if e.ptr not in frees]
    check(not unmatched, "%d sampled blocks were freed without sample_free" % len(unmatched))
    return "%d sampled 10000-byte allocations (allocated %d bytes each), all freed with sample_free" % (
        len(allocs), allocs[0].allocated)


SCENARIOS = {
    # test: (probes traced, scenario, env, check)
    "span_alloc": (SPAN_PROBES, "spans", {}, check_span_alloc),
    "span_return": (SPAN_PROBES, "spans", {}, check_span_return),
    "central_refill": (SPAN_PROBES, "spans", {}, check_central_refill),
    "central_return": (SPAN_PROBES, "spans", {}, check_central_return),
    "transfer_overflow": (SPAN_PROBES, "spans", {}, check_transfer_overflow),
    "backend_grow": (["backend_grow", "hugepage_taken"], "fill", {}, check_backend_grow),
    "backend_grow_legacy": (["backend_grow", "hugepage_taken"], "fill", {"JSMALLOC_BACKEND": "legacy"},
                            lambda r: check_backend_grow(r, legacy=True)),
    "hugepage_taken": (["hugepage_taken", "hugepage_filled"], "fill", {}, check_hugepage_taken),
    "hugepage_filled": (["hugepage_taken", "hugepage_filled"], "fill", {}, check_hugepage_filled),
    "hugepage_broken": (["hugepage_broken"], "break", {}, check_hugepage_broken),
    "hugepage_collapsed": (["hugepage_broken", "hugepage_filled", "hugepage_collapsed"], "break",
                           {"JSMALLOC_COLLAPSE": "1"}, check_hugepage_collapsed),
    "hugepage_released": (["hugepage_broken", "hugepage_released"], "break", {}, check_hugepage_released),
    # Regions hold large blocks only when they are on hugepages from the start.
    "region_created": (["region_created", "region_freed", "hugepage_taken"], "region",
                       {"JSMALLOC_LARGE_PAGES": "huge"}, lambda r: check_region(r, "created")),
    "region_freed": (["region_created", "region_freed", "hugepage_taken"], "region",
                     {"JSMALLOC_LARGE_PAGES": "huge"}, lambda r: check_region(r, "freed")),
    "hugecache_miss": (["hugecache_miss", "hugecache_hit"], "large", {}, lambda r: check_hugecache(r, "miss")),
    "hugecache_hit": (["hugecache_miss", "hugecache_hit"], "large", {}, lambda r: check_hugecache(r, "hit")),
    "hugecache_release": (["hugecache_release", "hugepage_released"], "large", {},
                          lambda r: check_hugecache(r, "release")),
    "release": (["release"], "large", {}, check_release),
    "release_legacy": (["release"], "large", {"JSMALLOC_BACKEND": "legacy"}, check_release),
    "background_cycle": (["background_cycle", "release"], "background", {}, check_background_cycle),
    "memory_limit_hit": (["memory_limit_hit"], "limit", {}, check_memory_limit_hit),
    "cpu_cache_resize": (["cpu_cache_resize"], "spans", {}, check_cpu_cache_resize),
    "sample_alloc": (["sample_alloc"], "helpers", {"JSMALLOC_SAMPLE_INTERVAL": "0"},
                     lambda r: check_helpers(r, "sample_alloc")),
    "sample_free": (["sample_free"], "helpers", {"JSMALLOC_SAMPLE_INTERVAL": "0"},
                    lambda r: check_helpers(r, "sample_free")),
    "sample_alloc_real": (["sample_alloc", "sample_free"], "sampled", {"JSMALLOC_SAMPLE_INTERVAL": "65536"},
                          check_sample_real),
    "numa_node": (["span_alloc", "span_return", "hugecache_miss", "release"], "numa",
                  {"JSMALLOC_NUMA_AWARE": "1", "JSMALLOC_NUMA_TOPOLOGY": "0/1"}, check_numa_node),
    # The same on the machine's own topology: node 1 must be a real node with
    # CPU 1 (the two-node guest of tests/vm; label guest).
    "numa_node_real": (["span_alloc", "span_return", "hugecache_miss", "release"], "numa",
                       {"JSMALLOC_NUMA_AWARE": "1"}, check_numa_node),
}


# --- Library-level checks --------------------------------------------------------

def notes(path):
    """(name, semaphore address) of every jsmalloc USDT note in an ELF file."""
    out = subprocess.run(["readelf", "-n", path], capture_output=True, text=True, check=True).stdout
    found = []
    for m in re.finditer(r"Provider: (\S+)\s+Name: (\S+)\s+Location: \S+, Base: \S+, Semaphore: (\S+)", out):
        if m.group(1) == "jsmalloc":
            found.append((m.group(2), int(m.group(3), 16)))
    return found


def section(path, name):
    out = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.replace("[ ", "[").split()
        if len(f) > 5 and f[1] == name:
            return int(f[3], 16), int(f[5], 16)
    raise Failure("%s has no %s section" % (path, name))


def test_list(args):
    said = []
    for path in (args.lib, args.workload):
        r = subprocess.run(["bpftrace", "-l", "usdt:%s:*" % path], capture_output=True, text=True, timeout=60)
        listed = {l.rsplit(":", 1)[1] for l in r.stdout.split() if ":jsmalloc:" in l}
        check(listed == set(PROBES), "bpftrace -l on %s: missing %s, unexpected %s" % (
            path, sorted(set(PROBES) - listed), sorted(listed - set(PROBES))))
        start, size = section(path, ".probes")
        ns = notes(path)
        check({n for n, _ in ns} == set(PROBES), "notes of %s do not name every probe" % path)
        for name, sem in ns:
            check(start <= sem < start + size, "%s: semaphore of %s at %#x, outside .probes" % (path, name, sem))
        sems = {}
        for name, sem in ns:
            check(sems.setdefault(name, sem) == sem, "%s: two semaphores for %s" % (path, name))
        check(len(set(sems.values())) == len(PROBES), "%s: probes share semaphores" % path)
        said.append("%s: %d probes at %d sites, each with its own semaphore in .probes" % (
            os.path.basename(path), len(listed), len(ns)))
    doc = os.path.join(args.scripts, "..", "docs", "probes.md")
    text = open(doc).read()
    undocumented = [p for p in PROBES if ("`%s`" % p) not in text]
    check(not undocumented, "docs/probes.md does not document %s" % undocumented)
    header = open(os.path.join(args.scripts, "jsmalloc_probes.h")).read()
    declared = set(re.findall(r"^\s*X\((\w+)\)", header, re.M))
    check(declared == set(PROBES), "probes/jsmalloc_probes.h lists %s" % sorted(declared))
    return "; ".join(said) + "; all documented in docs/probes.md"


def test_shared_library(args):
    run = trace_wrapper_c(args, SPAN_PROBES + ["backend_grow"], "spans")
    a = check_span_alloc(run)
    b = check_span_return(run)
    check(run.events["backend_grow"], "no backend_grow from libjsmalloc.so")
    return "libjsmalloc.so through jsmalloc-trace -c: " + a + "; " + b


def start_waiting_workload(binary, scenario, env):
    env = dict(os.environ, PROBE_WORKLOAD_WAIT="1", **env)
    p = subprocess.Popen([binary, scenario], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    line = p.stdout.readline()
    check(line.startswith("READY "), "workload said %r" % line)
    return p


def trace_pid(args, script, binary, scenario, env):
    """jsmalloc-trace SCRIPT -p PID on a workload that waits for the tracer."""
    wl = start_waiting_workload(binary, scenario, env)
    tracer = subprocess.Popen([args.trace, script, "-p", str(wl.pid)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True,
                              env=bpftrace_env({}))
    out = []
    try:
        while True:  # the script's banner: every probe is attached
            line = tracer.stdout.readline()
            check(line, "jsmalloc-trace ended before attaching: %s" % "".join(out))
            out.append(line)
            if line.startswith("Tracing jsmalloc"):
                break
        wl.stdin.write("go\n")
        wl.stdin.flush()
        wl_out = []
        while True:
            line = wl.stdout.readline()
            check(line, "workload ended early: %s" % "".join(wl_out))
            wl_out.append(line)
            if line.startswith("DONE"):
                break
        time.sleep(0.5)  # let bpftrace read the last events
        # The summary prints while the workload lives. Repeat the signal: one
        # that lands just before bpftrace blocks for events can go unnoticed.
        for _ in range(30):
            os.killpg(tracer.pid, signal.SIGINT)
            try:
                rest, _ = tracer.communicate(timeout=2)
                out.append(rest)
                break
            except subprocess.TimeoutExpired:
                pass
    finally:
        if tracer.poll() is None:
            os.killpg(tracer.pid, signal.SIGKILL)
        wl.stdin.close()
        wl.wait(timeout=30)
    text = "".join(out)
    check(tracer.returncode == 0, "jsmalloc-trace -p exited with %d:\n%s" % (tracer.returncode, text))
    return text, Run("".join(wl_out))


def map_entries(text, name):
    return {k: int(v) for k, v in re.findall(r"^@%s\[([^\]]*)\]: (-?\d+)$" % name, text, re.M)}


def test_wrapper_pid(args):
    text, wl = trace_pid(args, os.path.join(args.scripts, "span_lifecycle.bt"), args.shared_workload, "spans", {})
    print(text)
    cl, spans = wl.x("cl"), wl.x("objects") // wl.x("class_objects")
    allocated = map_entries(text, "spans_allocated")
    returned = map_entries(text, "spans_returned")
    check(allocated.get(str(cl), 0) >= spans, "summary: class %d allocated %s spans, want >= %d" % (
        cl, allocated.get(str(cl)), spans))
    check(returned.get(str(cl), 0) >= spans, "summary: class %d returned %s spans" % (cl, returned.get(str(cl))))
    check(re.search(r"^@lifetime_us:\s*\n\[", text, re.M), "summary has no lifetime histogram")
    return "jsmalloc-trace -p on libjsmalloc.so: class %d: %d spans allocated, %d returned" % (
        cl, allocated[str(cl)], returned[str(cl)])


# --- Shipped scripts on workloads ---------------------------------------------------

def run_script_c(args, name, cmd, env):
    script = os.path.join(args.scripts, name + ".bt")
    r = subprocess.run([args.trace, script, "-c", cmd], capture_output=True, text=True, timeout=110,
                       env=bpftrace_env(env))
    text = r.stdout + r.stderr
    print(text)
    check(r.returncode == 0, "jsmalloc-trace %s.bt -c exited with %d" % (name, r.returncode))
    check(not re.search(r"Lost \d+ events", text), "bpftrace lost events")
    return text


def hist_counts(text, name):
    m = re.search(r"^@%s:\s*\n((?:\[.*\n)+)" % re.escape(name), text, re.M)
    check(m, "summary has no @%s histogram" % name)
    return [int(x) for x in re.findall(r"[)\]]\s+(\d+) \|", m.group(1))]


def test_script_span_lifecycle(args):
    text = run_script_c(args, "span_lifecycle", "%s 1500" % args.churn, {})
    check("=== jsmalloc span lifecycle" in text, "no summary")
    check(re.search(r"churn: \d+ allocations", text), "the churn did not finish")
    check("span allocations/s by size class" in text, "no per-second rates")
    allocated = map_entries(text, "spans_allocated")
    returned = map_entries(text, "spans_returned")
    check(len(allocated) >= 10 and min(allocated.values()) > 0, "summary: spans allocated %s" % allocated)
    check(returned, "summary: no spans returned")
    life = hist_counts(text, "lifetime_us")
    check(sum(life) > 0, "empty lifetime histogram")
    check(map_entries(text, "transfer_overflows"), "summary: no transfer-cache overflows")
    return "%d classes shown, %d span lifetimes in the histogram" % (len(allocated), sum(life))


def test_script_hugepage_lifecycle(args):
    py = ("import ctypes, random\n"
          "libc = ctypes.CDLL(None)\n"
          "random.seed(1)\n"
          "for _ in range(3):\n"
          "    blocks = [bytes(random.randrange(64, 8192)) for _ in range(40000)]\n"
          "    del blocks[::2]\n"
          "    libc.malloc_trim(0)\n"
          "    blocks += [bytearray(random.randrange(64, 8192)) for _ in range(20000)]\n"
          "    big = [bytearray(3 << 20) for _ in range(4)]\n"
          "    del blocks, big\n"
          "    libc.malloc_trim(0)\n"
          "print('python workload done')\n")
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "jsmalloc_probe_hugepages_%d.py" % os.getpid())
    with open(path, "w") as f:
        f.write(py)
    try:
        text = run_script_c(args, "hugepage_lifecycle",
                            "LD_PRELOAD=%s JSMALLOC_COLLAPSE=1 /usr/bin/python3 %s" % (args.lib, path), {})
    finally:
        os.unlink(path)
    check("python workload done" in text, "the python workload did not finish")
    totals = map_entries(text, "totals")
    for k in ("hugepages taken from the OS", "hugepages broken (first subrelease)",
              "hugepages released to the OS", "MiB of address space mapped"):
        check(totals.get(k, 0) > 0, "summary: %s = %s" % (k, totals.get(k)))
    occ = hist_counts(text, "occupancy_pct")
    check(sum(occ) == totals["hugepages broken (first subrelease)"], "occupancy histogram counts %d" % sum(occ))
    check(map_entries(text, "filled"), "summary: no filled hugepages")
    return "taken %d, broken %d, released %d hugepages; occupancy histogram of %d" % (
        totals["hugepages taken from the OS"], totals["hugepages broken (first subrelease)"],
        totals["hugepages released to the OS"], sum(occ))


def test_script_release_latency(args):
    text = run_script_c(args, "release_latency", "%s 2500" % args.churn, {"JSMALLOC_BACKGROUND": "1"})
    check("=== jsmalloc release latency" in text, "no summary")
    cycles = map_entries(text, "cycles").get("cycles", 0)
    check(cycles >= 2, "summary: %d background cycles in 2.5 s" % cycles)
    check(sum(hist_counts(text, "cycle_us")) == cycles, "cycle histogram disagrees with the count")
    calls = map_entries(text, "calls")
    check(calls.get("forced", 0) > 0, "summary: no forced releases (malloc_trim)")
    check(re.search(r"^@release_us\[forced\]:\s*\n\[", text, re.M), "no forced release histogram")
    return "%d background cycles, release calls %s" % (cycles, calls)


def stack_blocks(text, name):
    """[(stack text, value)] of a stack-keyed map in bpftrace's print format."""
    return [(m.group(1), int(m.group(2))) for m in
            re.finditer(r"^@%s\[\n(.*?)\n\]: (\d+)$" % name, text, re.M | re.S)]


def sample_weight(size, interval=2 * MiB):
    """Bytes a sample of `size` bytes stands for (the heap sampler's weight)."""
    return size / (1 - math.exp(-size / interval))


def test_script_top_sampled_sites(args):
    text, wl = trace_pid(args, os.path.join(args.scripts, "top_sampled_sites.bt"), args.workload, "samples",
                         {"JSMALLOC_SAMPLE_INTERVAL": "0"})
    print(text)
    sampled = stack_blocks(text, "sampled_bytes")
    big = [v for st, v in sampled if "SampleSiteBig" in st]
    small = [v for st, v in sampled if "SampleSiteSmall" in st]
    check(big == [wl.x("big_bytes")], "SampleSiteBig sampled bytes %s, want %d" % (big, wl.x("big_bytes")))
    check(small == [wl.x("small_bytes")], "SampleSiteSmall sampled bytes %s" % small)
    check(sampled[-1][1] == wl.x("big_bytes"), "the biggest site is not printed last (top)")
    est = stack_blocks(text, "estimated_bytes")
    want = {"SampleSiteBig": 30 * sample_weight(100000), "SampleSiteSmall": 10 * sample_weight(1000)}
    for site, w in want.items():
        got = [v for st, v in est if site in st]
        check(len(got) == 1 and abs(got[0] - w) <= 0.01 * w,
              "%s estimated bytes %s, want %.0f (+-1%%)" % (site, got, w))
    totals = map_entries(text, "totals")
    check(totals.get("samples") == 40 and totals.get("sampled bytes") == 3010000, "summary: totals %s" % totals)
    freed = 15 * sample_weight(100000)
    check(abs(totals.get("estimated bytes freed", 0) - freed) <= 0.01 * freed, "summary: freed %s" % totals)
    return "SampleSiteBig %d sampled bytes (estimated %d allocated), SampleSiteSmall %d (estimated %d)" % (
        big[0], [v for st, v in est if "SampleSiteBig" in st][0], small[0],
        [v for st, v in est if "SampleSiteSmall" in st][0])


TESTS = {
    "list": test_list,
    "shared_library": test_shared_library,
    "wrapper_pid": test_wrapper_pid,
    "script.span_lifecycle": test_script_span_lifecycle,
    "script.hugepage_lifecycle": test_script_hugepage_lifecycle,
    "script.release_latency": test_script_release_latency,
    "script.top_sampled_sites": test_script_top_sampled_sites,
}


def main():
    ap = argparse.ArgumentParser()
    for opt in ("workload", "shared-workload", "churn", "lib", "trace", "scripts"):
        ap.add_argument("--" + opt, required=True)
    ap.add_argument("test")
    args = ap.parse_args()
    if args.test not in SCENARIOS and args.test not in TESTS:
        sys.exit("unknown test %s" % args.test)
    reason = bpf_unavailable_reason()
    if reason is not None:
        print("probes.%s: BPF is unavailable: %s" % (args.test, reason))
        if os.environ.get("JSMALLOC_TEST_PROBE_TESTS_ALLOW_SKIP") == "1":
            print("skipped (JSMALLOC_TEST_PROBE_TESTS_ALLOW_SKIP=1)")
            sys.exit(77)
        print("FAIL: the probe tests need root and a working bpftrace")
        sys.exit(1)
    try:
        if args.test in SCENARIOS:
            probes, scenario, env, fn = SCENARIOS[args.test]
            run = trace_c(args, probes, scenario, env)
            said = fn(run)
        else:
            said = TESTS[args.test](args)
    except Failure as e:
        print("FAIL probes.%s: %s" % (args.test, e))
        sys.exit(1)
    print("ok probes.%s: %s" % (args.test, said))


if __name__ == "__main__":
    main()
