#!/usr/bin/env python3
"""check_layers.py SOURCE_DIR [--selftest]: the source folders keep their layers.

The layers, lowest first, are JSMALLOC_LAYERS in CMakeLists.txt (a source's
layer is its top folder; os/linux/ is the OS layer's implementation). Checks,
over every .h/.cc/.c file of those folders:
  * each #include "folder/..." names a folder of the same layer or a lower
    one (the public API headers, "jsmalloc/...", only from the top layer);
  * no two folders include each other (reported per pair);
  * outside os/, the OS layer is reached through os/os.h only, never an
    os/linux/ header;
  * every layer folder has a README.md.
CMake enforces the first rule at build time too (each layer compiles against
a view of the folders it may include); this check also covers headers that
no lower-layer file compiles. Prints one line per check and "N passed, M
failed"; exits 1 on a failure. --selftest runs the checker on small trees
made to break each rule and fails unless each is caught.
"""
import os
import re
import shutil
import sys
import tempfile

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layers_of(src):
    with open(os.path.join(src, "CMakeLists.txt"), encoding="utf-8") as f:
        m = re.search(r"set\(JSMALLOC_LAYERS ([^)]*)\)", f.read())
    if not m:
        raise SystemExit("CMakeLists.txt: no set(JSMALLOC_LAYERS ...)")
    return m.group(1).split()


def check_tree(src, out=print):
    results = []

    def check(ok, what, detail=""):
        results.append(bool(ok))
        out(("ok   " if ok else "FAIL ") + what + ("" if ok or not detail else ": " + detail))

    layers = layers_of(src)
    rank = {name: i for i, name in enumerate(layers)}
    upward, os_direct, folder_edges = [], [], set()
    files = 0
    for layer in layers:
        for root, _, names in os.walk(os.path.join(src, layer)):
            for name in sorted(names):
                if not name.endswith((".h", ".cc", ".c")):
                    continue
                path = os.path.join(root, name)
                rel = os.path.relpath(path, src)
                files += 1
                with open(path, encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m or "/" not in m.group(1):
                            continue
                        inc = m.group(1)
                        top = inc.split("/", 1)[0]
                        where = "%s:%d includes %s" % (rel, n, inc)
                        if top == "jsmalloc":
                            if layer != layers[-1]:
                                upward.append(where + " (the public API is the top layer's)")
                            continue
                        if top not in rank:
                            continue  # a system or third-party header
                        if top != layer:
                            folder_edges.add((layer, top))
                        if rank[top] > rank[layer]:
                            upward.append(where)
                        if layer != "os" and inc.startswith("os/linux/"):
                            os_direct.append(where)
    check(files > 0, "source files found in %s (%d)" % (", ".join(layers), files))
    check(not upward, "no include reaches a higher layer", "; ".join(upward[:10]))
    cycles = sorted("%s <-> %s" % (a, b) for a, b in folder_edges if (b, a) in folder_edges and a < b)
    check(not cycles, "no two folders include each other", ", ".join(cycles))
    check(not os_direct, "outside os/, only os/os.h is included from the OS layer",
          "; ".join(os_direct[:10]))
    missing = [l for l in layers if not os.path.isfile(os.path.join(src, l, "README.md"))]
    check(not missing, "every layer folder has a README.md", ", ".join(missing))
    return results


def selftest():
    cases = {
        "upward include": ("base/a.h", '#include "runtime/b.h"\n'),
        "cycle": ("base/a.h", '#include "caches/b.h"\n'),
        "os/linux from outside": ("base/a.h", '#include "os/linux/x.h"\n'),
        "public API below the top": ("caches/a.h", '#include "jsmalloc/jsmalloc.h"\n'),
        "missing README": (None, None),
    }
    ok = True
    for what, (path, text) in cases.items():
        tmp = tempfile.mkdtemp()
        try:
            with open(os.path.join(tmp, "CMakeLists.txt"), "w") as f:
                f.write("set(JSMALLOC_LAYERS os base caches runtime)\n")
            for l in ("os", "os/linux", "base", "caches", "runtime"):
                os.makedirs(os.path.join(tmp, l), exist_ok=True)
                if l != "os/linux" and not (what == "missing README" and l == "caches"):
                    open(os.path.join(tmp, l, "README.md"), "w").close()
            with open(os.path.join(tmp, "caches", "b.h"), "w") as f:
                f.write('#include "base/a.h"\n#include "os/os.h"\n')
            with open(os.path.join(tmp, "runtime", "b.h"), "w") as f:
                f.write('#include "caches/b.h"\n#include "jsmalloc/jsmalloc.h"\n')
            with open(os.path.join(tmp, "base", "a.h"), "w") as f:
                f.write('#include "os/os.h"\n')
            if path:
                with open(os.path.join(tmp, path), "a") as f:
                    f.write(text)
            caught = not all(check_tree(tmp, out=lambda s: None))
        finally:
            shutil.rmtree(tmp)
        print(("ok   " if caught else "FAIL ") + "selftest: a tree with a %s is refused" % what)
        ok = ok and caught
    # And a clean tree passes.
    tmp = tempfile.mkdtemp()
    try:
        with open(os.path.join(tmp, "CMakeLists.txt"), "w") as f:
            f.write("set(JSMALLOC_LAYERS os base runtime)\n")
        for l in ("os", "base", "runtime"):
            os.makedirs(os.path.join(tmp, l))
            open(os.path.join(tmp, l, "README.md"), "w").close()
        with open(os.path.join(tmp, "runtime", "a.cc"), "w") as f:
            f.write('#include "base/b.h"\n#include "os/os.h"\n#include "jsmalloc/jsmalloc.h"\n')
        clean = all(check_tree(tmp, out=lambda s: None))
    finally:
        shutil.rmtree(tmp)
    print(("ok   " if clean else "FAIL ") + "selftest: a clean tree passes")
    return ok and clean


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src = os.path.abspath(args[0] if args else os.path.join(os.path.dirname(__file__), "..", ".."))
    if "--selftest" in sys.argv:
        ok = selftest()
        print("selftest %s" % ("passed" if ok else "failed"))
        return 0 if ok else 1
    results = check_tree(src)
    print("%d passed, %d failed" % (results.count(True), results.count(False)))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
