#!/usr/bin/env python3
"""scripts/jsmalloc-hugepages --all and its formats, on two children of its own:
one on glibc's malloc, one with JSMalloc preloaded.

  jsmalloc_hugepages.py SCRIPT LIBJSMALLOC                  --all, sorting, --top,
      text/json/openmetrics/prometheus (checked by a strict parser), --output,
      the single-PID formats, bad input and exit codes
  jsmalloc_hugepages.py SCRIPT LIBJSMALLOC --node-exporter  Prometheus's
      node_exporter reads the --format prometheus file with its textfile
      collector; exits 77 (skipped) when prometheus-node-exporter is missing
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

MIB = 1024 * 1024
SKIP = 77
PF_KTHREAD = 0x00200000
JS_MIB, GLIBC_MIB = 64, 96
# The JSMalloc child renames itself to this (prctl PR_SET_NAME): a double
# quote, a backslash and a newline, which label values must escape.
JS_NAME = 'hp-js"q\\\n1'
# The glibc child keeps its name, longer than the 15 characters of
# /proc/PID/comm: the command column shows it whole, from the command line.
GLIBC_NAME = "hp-glibc-child-long-name"

CHILD_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
/* child MIB [NAME]: holds MIB MiB of 1000-byte objects, touched, until stdin closes. */
int main(int argc, char **argv) {
  long n = atol(argv[1]) * 1024 * 1024 / 1000;
  if (argc > 2) prctl(PR_SET_NAME, argv[2], 0, 0, 0);
  char **p = malloc(n * sizeof *p);
  for (long i = 0; i < n; i++) { p[i] = malloc(1000); memset(p[i], (int)i, 1000); }
  printf("ready\n");
  fflush(stdout);
  getchar();
  for (long i = 0; i < n; i++) free(p[i]);
  free(p);
  return 0;
}
"""


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def ok(what):
    print(f"ok: {what}", flush=True)


# --- A strict parser of the OpenMetrics text format and of the Prometheus text
# format 0.0.4 ------------------------------------------------------------------

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]Inf|NaN")
TYPES = {"openmetrics": {"counter", "gauge", "histogram", "gaugehistogram", "stateset", "info",
                         "summary", "unknown"},
         "prometheus": {"counter", "gauge", "histogram", "summary", "untyped"}}


def parse_labels(line, i, lineno):
    """line[i] is "{": returns (labels, index after "}")."""
    labels = {}
    i += 1
    if line[i:i + 1] == "}":
        return labels, i + 1
    while True:
        m = LABEL_NAME.match(line, i)
        if not m:
            raise Fail(f"line {lineno}: bad label name at column {i}: {line!r}")
        name, i = m.group(), m.end()
        if line[i:i + 2] != '="':
            raise Fail(f"line {lineno}: expected =\" after label {name}: {line!r}")
        i += 2
        value = []
        while True:
            if i >= len(line):
                raise Fail(f"line {lineno}: unterminated label value: {line!r}")
            c = line[i]
            if c == '"':
                i += 1
                break
            if c == "\\":
                esc = line[i + 1:i + 2]
                if esc not in ("\\", '"', "n"):
                    raise Fail(f"line {lineno}: bad escape \\{esc} in a label value: {line!r}")
                value.append("\n" if esc == "n" else esc)
                i += 2
            else:
                value.append(c)
                i += 1
        if name in labels:
            raise Fail(f"line {lineno}: label {name} twice: {line!r}")
        labels[name] = "".join(value)
        if line[i:i + 1] == ",":
            i += 1
            continue
        if line[i:i + 1] == "}":
            return labels, i + 1
        raise Fail(f"line {lineno}: expected , or }} after a label: {line!r}")


def parse_exposition(text, fmt, strict=True):
    """fmt "openmetrics" or "prometheus". strict: the rules of our own output
    (gauges only, every family with HELP and TYPE before its samples, sample
    names equal to the family's, no timestamps); otherwise whatever another
    program (node_exporter) may print in that format.
    Returns {"samples": {(name, frozenset(labels)): value}, "help": {...},
    "type": {...}, "unit": {...}}."""
    om = fmt == "openmetrics"
    check(text.endswith("\n"), f"{fmt}: does not end with a newline")
    lines = text[:-1].split("\n")
    if om:
        check(lines and lines[-1] == "# EOF", "openmetrics: the last line is not # EOF")
        lines = lines[:-1]
    out = {"samples": {}, "help": {}, "type": {}, "unit": {}}
    family, family_has_samples, seen_families = None, False, set()
    for n, line in enumerate(lines, 1):
        if line == "":
            check(not om and not strict, f"{fmt}: blank line {n}")
            continue
        if line.startswith("#"):
            m = re.match(r"# (HELP|TYPE|UNIT) (\S+)(?: (.*))?$", line)
            if not m:
                check(not om and not strict, f"{fmt}: line {n} is not HELP, TYPE or UNIT: {line!r}")
                continue  # a comment in the Prometheus text format
            kind, name, rest = m.group(1), m.group(2), m.group(3) or ""
            check(METRIC_NAME.fullmatch(name), f"line {n}: bad metric name {name!r}")
            check(kind != "UNIT" or om, f"{fmt}: # UNIT (OpenMetrics only) on line {n}")
            if name != family:
                check(name not in seen_families, f"line {n}: family {name} appears twice")
                family, family_has_samples = name, False
                seen_families.add(name)
            check(not family_has_samples, f"line {n}: # {kind} after samples of {name}")
            table = out[kind.lower()]
            check(name not in table, f"line {n}: second # {kind} for {name}")
            if kind == "HELP":
                escapes = re.findall(r"\\(.)", rest)
                allowed = ("\\", "n", '"') if om else ("\\", "n")
                check(all(e in allowed for e in escapes), f"line {n}: bad escape in HELP: {line!r}")
                table[name] = rest.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
            elif kind == "TYPE":
                check(rest in TYPES[fmt], f"line {n}: type {rest!r} is not a {fmt} type")
                check(not strict or rest == "gauge", f"line {n}: {name} is a {rest}, want gauge")
                table[name] = rest
            else:
                check(name.endswith("_" + rest), f"line {n}: unit {rest!r} is not the suffix of {name}")
                table[name] = rest
            continue
        m = METRIC_NAME.match(line)
        check(m, f"line {n}: not a sample: {line!r}")
        name, i = m.group(), m.end()
        labels = {}
        if line[i:i + 1] == "{":
            labels, i = parse_labels(line, i, n)
        check(line[i:i + 1] == " ", f"line {n}: expected one space before the value: {line!r}")
        parts = line[i + 1:].split(" ")
        check(NUMBER.fullmatch(parts[0]), f"line {n}: bad value {parts[0]!r}")
        check(len(parts) == 1 or (not strict and len(parts) == 2 and re.fullmatch(r"-?[0-9.e+]+", parts[1])),
              f"line {n}: timestamp or trailing text: {line!r}")
        if strict:
            check(family is not None and family in out["type"], f"line {n}: sample {name} before its # TYPE")
            check(name == family, f"line {n}: sample {name} inside family {family}")
            check(family in out["help"], f"line {n}: family {family} has no # HELP")
        elif family is not None and not name.startswith(family):
            family = None  # an untyped sample in the Prometheus text format
        family_has_samples = True
        key = (name, frozenset(labels.items()))
        check(key not in out["samples"], f"line {n}: duplicate sample {line!r}")
        out["samples"][key] = float(parts[0])
    return out


def samples_of(parsed, name):
    """{pid: (labels, value)} of one per-process family."""
    return {int(dict(k[1])["pid"]): (dict(k[1]), v) for k, v in parsed["samples"].items() if k[0] == name}


# --- Running the tool -------------------------------------------------------

def run(script, *args, rc=0, user=None):
    cmd = [script, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "/usr/bin/python3", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")
    check(r.returncode == rc, f"{' '.join(args)}: exit status {r.returncode}, want {rc}; stderr: {r.stderr.strip()}")
    return r


def start_children(d, lib):
    src, exe = os.path.join(d, "child.c"), os.path.join(d, GLIBC_NAME)
    with open(src, "w") as f:
        f.write(CHILD_C)
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "GLIBC_TUNABLES") and not k.startswith("JSMALLOC_")}
    subprocess.run(["cc", "-O1", "-o", exe, src], check=True, env=env)
    children = {}
    for kind, args, extra in (("glibc", [str(GLIBC_MIB)], {}),
                              ("jsmalloc", [str(JS_MIB), JS_NAME], {"LD_PRELOAD": lib})):
        c = subprocess.Popen([exe, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env={**env, **extra}, text=True)
        children[kind] = c
        check(c.stdout.readline().strip() == "ready", f"the {kind} child did not start")
    return children


def stop_children(children):
    for c in children.values():
        try:
            c.communicate("x\n", timeout=30)
        except (subprocess.TimeoutExpired, OSError, ValueError):
            c.kill()
            c.wait()


def check_children_rows(rows, children, mode, where):
    """rows: {pid: dict with allocator, anon_bytes, anon_huge_bytes, rss_bytes, command}."""
    g, j = children["glibc"].pid, children["jsmalloc"].pid
    check(g in rows and j in rows, f"{where}: children {g} (glibc), {j} (JSMalloc) not both listed")
    gr, jr = rows[g], rows[j]
    check(gr["allocator"] == "glibc (or static)", f"{where}: glibc child's allocator {gr['allocator']!r}")
    check(jr["allocator"] == "jsmalloc", f"{where}: JSMalloc child's allocator {jr['allocator']!r}")
    for r, mib, who in ((gr, GLIBC_MIB, "glibc"), (jr, JS_MIB, "JSMalloc")):
        check((mib - 4) * MIB <= r["anon_bytes"] <= 4 * mib * MIB,
              f"{where}: {who} child anon {r['anon_bytes'] / MIB:.1f} MiB, want about {mib}")
        check(r["rss_bytes"] >= r["anon_bytes"] >= r["anon_huge_bytes"] >= 0,
              f"{where}: {who} child: want RSS >= anon >= THP, got {r}")
    if mode != "never":
        check(jr["anon_huge_bytes"] > 0, f"{where}: JSMalloc child has no THP (mode {mode})")
    if mode in ("madvise", "never"):
        check(gr["anon_huge_bytes"] == 0, f"{where}: glibc child on THP in mode {mode}")


def test_all(script, lib, children, work):
    g, j = children["glibc"].pid, children["jsmalloc"].pid

    # JSON: the children with their allocators and plausible numbers.
    data = json.loads(run(script, "--all", "--format", "json").stdout)
    mode = data["thp_enabled"]
    check(mode in ("always", "madvise", "never"), f"THP mode {mode!r}")
    check(data["thp_defrag"] != "unknown", "THP defrag unknown")
    rows = {p["pid"]: p for p in data["processes"]}
    check_children_rows(rows, children, mode, "--all --format json")
    check(rows[j]["command"] == rows[j]["comm"] == JS_NAME and rows[g]["command"] == GLIBC_NAME
          and rows[g]["comm"] == GLIBC_NAME[:15], f"commands {rows[j]}, {rows[g]}")
    total = data["total"]
    check(total["processes"] == len(data["processes"]), "total.processes is not the number of rows")
    check(total["anon_bytes"] == sum(p["anon_bytes"] for p in data["processes"]), "total anon is not the sum")
    check(all(p["anon_bytes"] > 0 for p in data["processes"]), "a process without anonymous memory is listed")
    ok(f"--all (json): {len(rows)} processes; THP {mode}; glibc child "
       f"{rows[g]['anon_bytes'] / MIB:.1f} MiB anon, {rows[g]['anon_huge_bytes'] / MIB:.1f} THP; JSMalloc child "
       f"{rows[j]['anon_bytes'] / MIB:.1f} MiB anon, {rows[j]['anon_huge_bytes'] / MIB:.1f} THP")

    # Sorting: each order holds over the whole list, and the children fall in it.
    orders = {"anon": lambda p: -p["anon_bytes"], "rss": lambda p: -p["rss_bytes"],
              "coverage": lambda p: -(p["coverage"] or 0), "pid": lambda p: p["pid"]}
    for sort, key in orders.items():
        procs = json.loads(run(script, "--all", "--format", "json", "--sort", sort).stdout)["processes"]
        keys = [key(p) for p in procs]
        check(keys == sorted(keys), f"--sort {sort}: not in order")
        pos = {p["pid"]: i for i, p in enumerate(procs)}
        check(g in pos and j in pos, f"--sort {sort}: children missing")
        if sort == "anon":
            check(pos[g] < pos[j], "--sort anon: the glibc child (more memory) is not first")
        if sort == "coverage" and mode != "never":
            check(pos[j] < pos[g], "--sort coverage: the JSMalloc child is not before the glibc child")
    ok("--sort anon, rss, coverage, pid")

    # --top.
    top = json.loads(run(script, "--all", "--format", "json", "--top", "1").stdout)
    check(len(top["processes"]) == 1 and top["total"]["processes"] >= 2,
          f"--top 1: {len(top['processes'])} rows, total of {top['total']['processes']}")

    # Text: header, columns, the children's rows, TOTAL, 100 columns.
    text = run(script, "--all").stdout
    lines = text.rstrip("\n").split("\n")
    check(re.match(rf"THP enabled: {mode}, defrag: \S+; \d+ process(es)? with anon memory, by anon$",
                   lines[0]), f"text header: {lines[0]!r}")
    check(lines[1].split() == ["PID", "command", "allocator", "RSS", "MiB", "anon", "MiB", "THP", "MiB",
                               "coverage"], f"column header: {lines[1]!r}")
    check(all(len(l) <= 100 for l in lines), "a line is wider than 100 columns")
    row_re = re.compile(r"^ *(\d+)  (.{26}) (.{18}) +([0-9.]+) +([0-9.]+) +([0-9.]+) +([0-9.]+%|-)$")
    text_rows = {}
    for l in lines[2:]:
        m = row_re.match(l)
        if m:
            text_rows[int(m.group(1))] = {"command": m.group(2).rstrip(), "allocator": m.group(3).rstrip(),
                                          "rss_bytes": float(m.group(4)) * MIB,
                                          "anon_bytes": float(m.group(5)) * MIB,
                                          "anon_huge_bytes": float(m.group(6)) * MIB}
    check_children_rows(text_rows, children, mode, "--all (text)")
    check(text_rows[j]["command"] == JS_NAME.replace("\n", "?"), f"text command {text_rows[j]['command']!r}")
    total_lines = [l for l in lines if l.lstrip().startswith("TOTAL (")]
    check(len(total_lines) == 1, "no TOTAL line")
    top3 = run(script, "--all", "--top", "3", "--sort", "rss").stdout.rstrip("\n").split("\n")
    check(", top 3, by rss" in top3[0], f"--top 3 header: {top3[0]!r}")
    check(len([l for l in top3[2:] if row_re.match(l)]) == 3 and top3[5].lstrip().startswith("TOTAL"),
          f"--top 3: {top3}")
    ok("text: header, columns, rows of both children, TOTAL, <= 100 columns, --top 3")

    # --include-empty: more processes, among them a zombie of ours (no memory
    # at all), and no kernel thread.
    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{zombie.pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                break
        time.sleep(0.05)
    plain = json.loads(run(script, "--all", "--format", "json").stdout)["processes"]
    full = json.loads(run(script, "--all", "--format", "json", "--include-empty").stdout)["processes"]
    z = [p for p in full if p["pid"] == zombie.pid]
    check(not [p for p in plain if p["pid"] == zombie.pid], "--all lists a zombie (no anonymous memory)")
    check(len(z) == 1 and z[0]["anon_bytes"] == 0 and z[0]["coverage"] is None,
          f"--include-empty: the zombie {zombie.pid}: {z}")
    text = run(script, "--all", "--include-empty").stdout
    check(re.search(rf"^ *{zombie.pid}  true .* -$", text, re.M), "--include-empty (text): the zombie's row")
    om = parse_exposition(run(script, "--all", "--include-empty", "--format", "openmetrics").stdout, "openmetrics")
    check(zombie.pid in samples_of(om, "jsmalloc_process_anon_bytes")
          and zombie.pid not in samples_of(om, "jsmalloc_process_thp_coverage_ratio"),
          "--include-empty (openmetrics): the zombie has bytes but no coverage ratio")
    zombie.wait()
    for p in full:
        try:
            with open(f"/proc/{p['pid']}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        flags = int(stat[stat.rfind(b")") + 2:].split()[6])
        check(not flags & PF_KTHREAD, f"kernel thread {p['pid']} listed")
    ok(f"--include-empty: {len(full)} processes, no kernel thread")

    # OpenMetrics and the Prometheus text format, parsed strictly.
    for fmt in ("openmetrics", "prometheus"):
        out = run(script, "--all", "--format", fmt).stdout
        parsed = parse_exposition(out, fmt)
        check(parsed["samples"].get(("jsmalloc_host_thp_enabled", frozenset({("mode", mode)}))) == 1,
              f"{fmt}: no jsmalloc_host_thp_enabled{{mode=\"{mode}\"}} 1")
        rows = {}
        for name, field in (("jsmalloc_process_anon_bytes", "anon_bytes"),
                            ("jsmalloc_process_anon_huge_bytes", "anon_huge_bytes"),
                            ("jsmalloc_process_rss_bytes", "rss_bytes")):
            for pid, (labels, value) in samples_of(parsed, name).items():
                rows.setdefault(pid, {"allocator": labels["allocator"], "command": labels["comm"]})[field] = value
        check_children_rows(rows, children, mode, fmt)
        check(rows[j]["command"] == JS_NAME, f"{fmt}: comm label {rows[j]['command']!r}, want {JS_NAME!r}")
        cov = samples_of(parsed, "jsmalloc_process_thp_coverage_ratio")
        check(all(0 <= v <= 1 for _, v in cov.values()), f"{fmt}: coverage out of 0..1")
        check(abs(cov[j][1] - rows[j]["anon_huge_bytes"] / rows[j]["anon_bytes"]) < 1e-5,
              f"{fmt}: coverage of the JSMalloc child")
        for name in ("jsmalloc_host_anon_bytes", "jsmalloc_host_anon_huge_bytes", "jsmalloc_host_rss_bytes"):
            check((name, frozenset()) in parsed["samples"], f"{fmt}: no {name}")
        check(parsed["samples"][("jsmalloc_host_anon_bytes", frozenset())]
              == sum(v for _, v in samples_of(parsed, "jsmalloc_process_anon_bytes").values()),
              f"{fmt}: host anon is not the sum of the processes")
        units = parsed["unit"]
        if fmt == "openmetrics":
            check(units.get("jsmalloc_process_anon_bytes") == "bytes"
                  and units.get("jsmalloc_process_thp_coverage_ratio") == "ratio", f"units: {units}")
        ok(f"--format {fmt}: {len(parsed['samples'])} samples, {len(parsed['type'])} families, strict parse")

    # Single PID in every format.
    t = run(script, str(j)).stdout
    check(f"pid {j} " in t and "allocator: jsmalloc (libjsmalloc" in t, f"single-PID text: {t}")
    a = json.loads(run(script, str(j), "--json").stdout)
    b = json.loads(run(script, str(j), "--format", "json").stdout)
    check(a["pid"] == b["pid"] == j and a["allocator_detected"] == "jsmalloc" and set(a) == set(b),
          "PID --json / --format json")
    for fmt in ("openmetrics", "prometheus"):
        parsed = parse_exposition(run(script, str(g), "--format", fmt).stdout, fmt)
        rows = samples_of(parsed, "jsmalloc_process_anon_bytes")
        check(list(rows) == [g] and rows[g][0]["allocator"] == "glibc (or static)", f"PID --format {fmt}")
    ok("PID: text, --json, --format json|openmetrics|prometheus")

    # --output: the file, written through FILE.tmp and a rename.
    out = os.path.join(work, "jsmalloc.prom")
    r = run(script, "--all", "--format", "openmetrics", "--output", out)
    check(r.stdout == "", "--output also wrote to standard output")
    ino = os.stat(out).st_ino
    parse_exposition(open(out).read(), "openmetrics")
    run(script, "--all", "--format", "prometheus", "--output", out)
    parse_exposition(open(out).read(), "prometheus")
    check(os.stat(out).st_ino != ino, "--output rewrote the file in place (want a rename)")
    check(os.listdir(work).count("jsmalloc.prom.tmp") == 0, "--output left FILE.tmp behind")
    r = run(script, "--all", "--output", os.path.join(work, "no", "such", "dir", "x.prom"), rc=1)
    check(len(r.stderr.strip().splitlines()) == 1, f"--output to a missing directory: {r.stderr!r}")
    ok("--output: replaced by a rename, no FILE.tmp left; a missing directory: exit 1")

    # Bad input: one line on stderr, exit 2 (1 for a process that does not exist).
    with open("/proc/sys/kernel/pid_max") as f:
        no_pid = str(int(f.read()) + 1)
    cases = [(["--bogus"], 2), (["--all", "--format", "xml"], 2), (["--all", "--top", "abc"], 2),
             (["--all", "--top", "0"], 2), (["--all", "--sort", "size"], 2), ([], 2), (["abc"], 2),
             ([str(j), "--all"], 2), (["--top", "3", str(j)], 2), ([str(j), "--json", "--format", "text"], 2),
             ([no_pid], 1), ([no_pid, "--format", "openmetrics"], 1)]
    for args, rc in cases:
        r = run(script, *args, rc=rc)
        err = r.stderr.strip().splitlines()
        check(len(err) == 1 and err[0].startswith("jsmalloc-hugepages: ") and r.stdout == "",
              f"{args}: stderr {r.stderr!r}, stdout {r.stdout!r}")
    h = run(script, "--help")
    check(h.stderr == "" and all(w in h.stdout for w in ("usage:", "--all", "--format", "openmetrics",
                                                          "prometheus", "--output", "--top", "--sort")),
          "--help")
    ok(f"bad input: {len(cases)} cases, exit 2 (1 without the process); --help exits 0")

    # Not root: the processes it cannot read are counted in one line at the end.
    readable = os.geteuid() == 0 and shutil.which("setpriv") and os.path.exists("/usr/bin/python3") and \
        subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "test", "-r", script],
                       cwd="/").returncode == 0
    if readable:
        r = run(script, "--all", user=65534)
        last = r.stdout.rstrip("\n").split("\n")[-1]
        check(re.fullmatch(r"\d+ process(es)? could not be read \(permission denied\); run as root", last),
              f"as nobody, last line {last!r}")
        check(not re.search(rf"^ *({g}|{j}) ", r.stdout, re.M), "as nobody, root's children are listed")
        r = run(script, "--all", "--format", "json", user=65534)
        check(json.loads(r.stdout)["unreadable"] >= 2 and "could not be read" in r.stderr,
              "as nobody, --format json")
        ok(f"as nobody: {last}")
    else:
        print("note: not root, no setpriv, or the script is not readable by nobody: "
              "the unreadable-process line is not checked")


# --- node_exporter's textfile collector -----------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as r:
        return r.read().decode("utf-8")


def start_node_exporter(binary, textdir, log):
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen([binary, "--collector.disable-defaults", "--collector.textfile",
                                 f"--collector.textfile.directory={textdir}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--web.disable-exporter-metrics"],
                                stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                fetch(url)
                return proc, url
            except OSError:
                time.sleep(0.2)
        proc.kill()
        proc.wait()
    raise Fail("node_exporter did not start (see its log above)")


def test_node_exporter(script, children, work):
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if not binary:
        print("SKIP: prometheus-node-exporter is not installed (Debian: apt-get install prometheus-node-exporter)")
        return SKIP
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    textdir = os.path.join(work, "textfile")
    os.mkdir(textdir)
    log_path = os.path.join(work, "node_exporter.log")
    with open(log_path, "w") as log:
        proc, url = start_node_exporter(binary, textdir, log)
    try:
        prom = os.path.join(textdir, "jsmalloc.prom")
        run(script, "--all", "--format", "prometheus", "--output", prom)
        with open(prom) as f:
            ours = parse_exposition(f.read(), "prometheus")
        scraped = parse_exposition(fetch(url), "prometheus", strict=False)
        errors = scraped["samples"].get(("node_textfile_scrape_error", frozenset()))
        check(errors == 0, f"node_textfile_scrape_error is {errors}")
        missing = [k for k, v in ours["samples"].items() if scraped["samples"].get(k) != v]
        check(not missing, f"{len(missing)} of our samples not scraped with their value, e.g. {missing[:2]}")
        for name, help_text in ours["help"].items():
            check(scraped["help"].get(name) == help_text, f"HELP of {name} scraped as {scraped['help'].get(name)!r}")
            check(scraped["type"].get(name) == "gauge", f"{name} scraped as a {scraped['type'].get(name)}")
        rows = samples_of(scraped, "jsmalloc_process_anon_bytes")
        g, j = children["glibc"].pid, children["jsmalloc"].pid
        check(rows[j][0]["comm"] == JS_NAME and rows[j][0]["allocator"] == "jsmalloc"
              and rows[g][0]["allocator"] == "glibc (or static)", "children's labels as scraped")
        check(rows.get(proc.pid, ({}, 0))[0].get("allocator") == "go runtime",
              f"node_exporter (Go) labelled {rows.get(proc.pid, ({}, 0))[0].get('allocator')!r}")
        ok(f"{version}: textfile collector read {len(ours['samples'])} samples, "
           "node_textfile_scrape_error 0, values, HELP and escaped labels intact; node_exporter itself: go runtime")
    except Fail:
        with open(log_path) as f:
            sys.stdout.write(f.read())
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return 0


def main(argv):
    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] != "--node-exporter"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    script, lib = os.path.abspath(argv[0]), os.path.realpath(argv[1])
    node_exporter = len(argv) == 3
    if node_exporter and not (shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")):
        print("SKIP: prometheus-node-exporter is not installed (Debian: apt-get install prometheus-node-exporter)")
        return SKIP
    with tempfile.TemporaryDirectory(prefix="jsmalloc-hugepages-test.") as work:
        children = start_children(work, lib)
        try:
            if node_exporter:
                return test_node_exporter(script, children, work)
            test_all(script, lib, children, work)
            return 0
        except Fail as e:
            print(f"FAIL: {e}")
            return 1
        finally:
            stop_children(children)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
