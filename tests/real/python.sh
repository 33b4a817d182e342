#!/usr/bin/env bash
# CPython with PYTHONMALLOC=malloc: every object through JSMalloc.
source "$(dirname "$0")/common.sh"
cat > "$WORK/work.py" <<'PY'
import json, threading, random, collections, re, hashlib
random.seed(7)
d = {f"key{i}": [i, str(i) * (i % 17), {"n": i}] for i in range(200000)}
s = json.dumps(d, sort_keys=True)
back = json.loads(s)
assert back == d
words = collections.Counter(re.findall(r"\w+", s[:2000000]))
out = []
lock = threading.Lock()
def worker(k):
    local = []
    for i in range(30000):
        local.append(("x" * (i % 300)) + str(k * i))
        if len(local) > 500:
            local = local[250:]
    h = hashlib.sha256("".join(local).encode()).hexdigest()
    with lock:
        out.append((k, h))
ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
print(len(s), hashlib.sha256(s.encode()).hexdigest())
print(words.most_common(3))
for k, h in sorted(out):
    print(k, h)
big = [bytearray(random.randrange(1, 1 << 20)) for _ in range(200)]
print(sum(len(b) for b in big))
PY
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
run_compare python env PYTHONMALLOC=malloc "$PY" "$WORK/work.py"
