#!/usr/bin/env python3
"""check_build_files.py SOURCE_DIR: the Bazel files agree with CMakeLists.txt.

Needs no Bazel. Parses the Starlark files with Python's ast (BUILD and
WORKSPACE files are in the Python-compatible subset Starlark shares) and
checks:
  * BUILD.bazel, WORKSPACE, examples/bazel/{WORKSPACE,BUILD.bazel} and the
    offline stand-ins parse, and the BUILD/WORKSPACE files use no statement
    Starlark forbids there (def, for, if, while, import, class, ...);
  * JSMALLOC_CORE_SOURCES and JSMALLOC_API_SOURCES in BUILD.bazel hold the
    same files as the lists of the same names in CMakeLists.txt, without
    duplicates, and every file exists;
  * every header that the sources include with "..." is under
    include/jsmalloc/ or matched by the JSMALLOC_INTERNAL_HEADERS glob;
  * JSMALLOC_COPTS carries CMake's warning and code-generation options, the
    layer libraries add -fno-rtti -fno-exceptions, JSMALLOC_LAYERS is
    CMake's, and -lpthread/-luring are linked;
  * JSMALLOC_VARIANTS matches CMake's default page shift and variants;
  * the root WORKSPACE names the workspace "jsmalloc", the example pulls it
    in with local_repository(path = "../..") and links it with
    malloc = "@jsmalloc//:jsmalloc", and every @jsmalloc label the example
    uses is a public target of BUILD.bazel.
Prints one line per check and "N passed, M failed"; exits 1 on a failure.
"""
import ast
import fnmatch
import os
import re
import sys

SRC = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                      os.path.join(os.path.dirname(__file__), "..", ".."))
results = []


def check(ok, what, detail=""):
    results.append(bool(ok))
    print(("ok   " if ok else "FAIL ") + what + ("" if ok or not detail else ": " + detail))
    return ok


def read(rel):
    with open(os.path.join(SRC, rel), encoding="utf-8") as f:
        return f.read()


# Statements Starlark does not allow at all, and those BUILD/WORKSPACE files
# may not contain (they may only be used in .bzl files).
NEVER = (ast.While, ast.Import, ast.ImportFrom, ast.ClassDef, ast.Try, ast.With,
         ast.Global, ast.Nonlocal, ast.AsyncFunctionDef, ast.Lambda, ast.Yield)
NOT_IN_BUILD = (ast.FunctionDef, ast.For, ast.If)


def parse_starlark(rel, build_file):
    try:
        tree = ast.parse(read(rel), filename=rel)
    except (OSError, SyntaxError) as e:
        check(False, "%s parses" % rel, str(e))
        return None
    bad = [type(n).__name__ + " at line %d" % getattr(n, "lineno", 0)
           for n in ast.walk(tree)
           if isinstance(n, NEVER) or (build_file and isinstance(n, NOT_IN_BUILD))]
    check(not bad, "%s parses as Starlark%s" % (rel, " (BUILD dialect)" if build_file else ""),
          ", ".join(bad))
    return tree


def top_level_assign(tree, name):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node.value
    return None


def calls(tree, func):
    """Every call of `func` (a bare name) anywhere in the tree."""
    return [n for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == func]


def kwarg(call, name):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def literal(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return None


def cmake_list(text, name):
    """The words of set(NAME ...) in CMake text, comments dropped."""
    m = re.search(r"set\(\s*%s\s+(.*?)\)" % re.escape(name), text, re.S)
    if not m:
        return None
    words = re.sub(r"#[^\n]*", "", m.group(1)).split()
    # Later additions, e.g. list(APPEND JSMALLOC_CORE_SOURCES x.cc).
    for extra in re.finditer(r"list\(\s*APPEND\s+%s\s+(.*?)\)" % re.escape(name), text, re.S):
        words += re.sub(r"#[^\n]*", "", extra.group(1)).split()
    return words


# --- Parse everything -----------------------------------------------------------
build = parse_starlark("BUILD.bazel", True)
workspace = parse_starlark("WORKSPACE", True)
ex_workspace = parse_starlark("examples/bazel/WORKSPACE", True)
ex_build = parse_starlark("examples/bazel/BUILD.bazel", True)
offline = os.path.join("tests", "bazel", "offline_repos")
for dirpath, _, files in sorted(os.walk(os.path.join(SRC, offline))):
    for f in sorted(files):
        if f in ("WORKSPACE", "BUILD.bazel") or f.endswith(".bzl"):
            rel = os.path.relpath(os.path.join(dirpath, f), SRC)
            parse_starlark(rel, not f.endswith(".bzl"))

cmake = read("CMakeLists.txt")

# --- Source lists ----------------------------------------------------------------
if build is not None:
    for name in ("JSMALLOC_CORE_SOURCES", "JSMALLOC_API_SOURCES"):
        node = top_level_assign(build, name)
        bazel_list = literal(node) if node is not None else None
        cmake_words = cmake_list(cmake, name)
        if not check(isinstance(bazel_list, list), "BUILD.bazel: %s is a literal list" % name):
            continue
        if not check(cmake_words is not None, "CMakeLists.txt: set(%s ...) found" % name):
            continue
        dups = sorted({s for s in bazel_list if bazel_list.count(s) > 1})
        check(not dups, "BUILD.bazel: %s has no duplicates" % name, " ".join(dups))
        missing = sorted(set(cmake_words) - set(bazel_list))
        extra = sorted(set(bazel_list) - set(cmake_words))
        check(not missing and not extra,
              "%s: BUILD.bazel and CMakeLists.txt list the same %d files" % (name, len(cmake_words)),
              "only in CMakeLists.txt: %s; only in BUILD.bazel: %s" %
              (" ".join(missing) or "-", " ".join(extra) or "-"))
        absent = [s for s in bazel_list if not os.path.isfile(os.path.join(SRC, s))]
        check(not absent, "BUILD.bazel: every file of %s exists" % name, " ".join(absent))

    # --- Headers: every quoted include is covered by a glob ---------------------------
    hdr_node = top_level_assign(build, "JSMALLOC_INTERNAL_HEADERS")
    patterns = []
    if hdr_node is not None and isinstance(hdr_node, ast.Call) and hdr_node.args:
        patterns = literal(hdr_node.args[0]) or []
    check(patterns, "BUILD.bazel: JSMALLOC_INTERNAL_HEADERS = glob([...])")
    public = [c for c in calls(build, "cc_library") if literal(kwarg(c, "name")) == "jsmalloc_headers"]
    check(public and literal(kwarg(public[0], "strip_include_prefix")) == "include",
          "BUILD.bazel: jsmalloc_headers exposes include/ (strip_include_prefix)")
    sources = (cmake_list(cmake, "JSMALLOC_CORE_SOURCES") or []) + \
        (cmake_list(cmake, "JSMALLOC_API_SOURCES") or [])
    todo, seen, uncovered = list(sources), set(), []
    while todo:
        f = todo.pop()
        if f in seen or not os.path.isfile(os.path.join(SRC, f)):
            continue
        seen.add(f)
        for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)"', read(f), re.M):
            if inc.startswith("jsmalloc/"):
                rel = os.path.join("include", inc)
            else:
                rel = inc
                if not any(fnmatch.fnmatchcase(rel, p) for p in patterns):
                    uncovered.append("%s (from %s)" % (inc, f))
            if os.path.isfile(os.path.join(SRC, rel)):
                todo.append(rel)
            else:
                uncovered.append("%s (from %s, no such file)" % (inc, f))
    check(not uncovered, "every header the sources include is declared to Bazel (%d files walked)"
          % len(seen), "; ".join(sorted(set(uncovered))))

    # --- Options --------------------------------------------------------------------
    copts = literal(top_level_assign(build, "JSMALLOC_COPTS")) or []
    warnings = cmake_list(cmake, "JSMALLOC_WARNINGS") or []
    options = [w for w in (cmake_list(cmake, "JSMALLOC_COMPILE_OPTIONS") or [])
               if not w.startswith("${")]
    core_only = ["-fno-rtti", "-fno-exceptions"]  # the components only (operator new throws)
    want = [o for o in warnings + options if o not in core_only]
    missing = [o for o in want if o not in copts]
    check(want and not missing, "BUILD.bazel: JSMALLOC_COPTS has CMake's options (%s)" % " ".join(want),
          "missing " + " ".join(missing))
    check("-std=c++20" in copts, "BUILD.bazel: JSMALLOC_COPTS sets -std=c++20 (CMAKE_CXX_STANDARD 20)")
    def named(prefix):
        return [c for c in calls(build, "cc_library") if isinstance(kwarg(c, "name"), ast.BinOp)
                and literal(kwarg(c, "name").left) == prefix]

    core = named("jsmalloc_core")
    # The components: one library per layer, named "jsmalloc_" + layer + suffix.
    layer_libs = [c for c in calls(build, "cc_library") if isinstance(kwarg(c, "name"), ast.BinOp)
                  and isinstance(kwarg(c, "name").left, ast.BinOp)
                  and literal(kwarg(c, "name").left.left) == "jsmalloc_"]
    layer_copts = kwarg(layer_libs[0], "copts") if layer_libs else None
    check(isinstance(layer_copts, ast.BinOp) and isinstance(layer_copts.left, ast.Name)
          and layer_copts.left.id == "JSMALLOC_COPTS" and literal(layer_copts.right) == core_only,
          "BUILD.bazel: the layer libraries are built with JSMALLOC_COPTS + " + " ".join(core_only))
    bazel_layers = literal(top_level_assign(build, "JSMALLOC_LAYERS")) or []
    cmake_layers = (re.search(r"set\(JSMALLOC_LAYERS ([^)]*)\)", cmake) or [None, ""])[1].split()
    check(bazel_layers and bazel_layers == cmake_layers,
          "BUILD.bazel: JSMALLOC_LAYERS matches CMake's (%s)" % " ".join(cmake_layers),
          "BUILD.bazel has %s" % bazel_layers)
    check(layer_libs and literal(kwarg(layer_libs[0], "alwayslink")) is True,
          "BUILD.bazel: the layer libraries are alwayslink = True")
    linkopts = literal(top_level_assign(build, "JSMALLOC_LINKOPTS")) or []
    check("-lpthread" in linkopts and "-luring" in linkopts, "BUILD.bazel: links -lpthread -luring")

    # --- Variants -------------------------------------------------------------------
    variants = literal(top_level_assign(build, "JSMALLOC_VARIANTS")) or []
    m = re.search(r"set\(JSMALLOC_PAGE_SHIFT\s+(\d+)", cmake)
    want_variants = [("", int(m.group(1)) if m else None)]
    m = re.search(r"foreach\(v\s+((?:\"[^\"]+\"\s*)+)\)", cmake)
    for v in re.findall(r'"([^";]+);(\d+)"', m.group(1) if m else ""):
        want_variants.append(("_" + v[0], int(v[1])))
    check(sorted(variants) == sorted(want_variants),
          "BUILD.bazel: JSMALLOC_VARIANTS matches CMake %s" % want_variants, "BUILD.bazel has %s" % variants)
    targets = {"jsmalloc_headers"} | {"jsmalloc" + s for s, _ in variants} | \
        {"libjsmalloc%s.so" % s for s, _ in variants}
    lib = named("jsmalloc")
    check(lib and core and literal(kwarg(lib[0], "alwayslink")) is True
          and literal(kwarg(core[0], "alwayslink")) is True,
          "BUILD.bazel: the allocator libraries are alwayslink = True")
else:
    targets = set()

# --- Workspaces and the example ------------------------------------------------------
if workspace is not None:
    ws = calls(workspace, "workspace")
    check(ws and literal(kwarg(ws[0], "name")) == "jsmalloc", 'WORKSPACE: workspace(name = "jsmalloc")')
if ex_workspace is not None:
    lr = [c for c in calls(ex_workspace, "local_repository") if literal(kwarg(c, "name")) == "jsmalloc"]
    ok = lr and literal(kwarg(lr[0], "path")) == "../.."
    check(ok, 'examples/bazel/WORKSPACE: local_repository(name = "jsmalloc", path = "../..")')
if ex_build is not None:
    bins = [c for c in calls(ex_build, "cc_binary") if literal(kwarg(c, "malloc")) == "@jsmalloc//:jsmalloc"]
    check(bins, 'examples/bazel/BUILD.bazel: a cc_binary with malloc = "@jsmalloc//:jsmalloc"')
    tests = [c for c in calls(ex_build, "cc_test") if kwarg(c, "malloc") is not None]
    check(tests, "examples/bazel/BUILD.bazel: a cc_test with a malloc attribute")
    labels = {s for n in ast.walk(ex_build) if isinstance(n, ast.Constant) and isinstance(n.value, str)
              for s in [n.value] if s.startswith("@jsmalloc//")}
    unknown = sorted(l for l in labels if l.split(":", 1)[-1] not in targets)
    check(not unknown, "examples/bazel: every @jsmalloc label is a target of BUILD.bazel (%s)"
          % " ".join(sorted(labels)), " ".join(unknown))
    for c in calls(ex_build, "cc_binary") + calls(ex_build, "cc_test"):
        for s in literal(kwarg(c, "srcs")) or []:
            check(os.path.isfile(os.path.join(SRC, "examples", "bazel", s)),
                  "examples/bazel: %s exists" % s)

passed = sum(results)
print("%d passed, %d failed" % (passed, len(results) - passed))
sys.exit(0 if all(results) else 1)
