#!/usr/bin/env bash
# redis-server on a free loopback port, once without and once with JSMalloc
# preloaded (the redis-cli / redis-benchmark clients too, with their own
# report file). Each server is driven by redis-benchmark at several value
# sizes, then loaded with a known dataset of every type (strings up to 112 KiB,
# lists, hashes and sets in both of their encodings, sorted sets) written with
# redis-cli --pipe; the dataset is read back and compared with what was
# written, then mutated (deletes, appends, pops, removes) and read again.
# Compared between the two servers: DBSIZE, DEBUG DIGEST (a hash of the whole
# dataset), the read-back contents, error counts; INFO memory's used_memory
# (measured with malloc_usable_size, so JSMalloc's own size classes) must be
# of the same order and drop back after FLUSHALL. Both servers must shut down
# cleanly (SHUTDOWN NOSAVE, exit status 0), and the preloaded one must have
# written its JSMalloc report.
source "$(dirname "$0")/common.sh"

for p in redis-server redis-cli redis-benchmark; do
  command -v "$p" > /dev/null || fail "$p not found (apt-get install redis-server redis-tools)"
done
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

KEYS=${JSMALLOC_TEST_REAL_REDIS_KEYS:-50000}
REQUESTS=${JSMALLOC_TEST_REAL_REDIS_REQUESTS:-100000}
SIZES=${JSMALLOC_TEST_REAL_REDIS_SIZES:-"16 256 4096"}
PIPELINE=${JSMALLOC_TEST_REAL_REDIS_PIPELINE:-16}
BENCH_TESTS=set,get,lpush,lpop,incr,hset,sadd

SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2> /dev/null; then
    kill -9 "$SERVER_PID" 2> /dev/null || true
    wait "$SERVER_PID" 2> /dev/null || true
  fi
  SERVER_PID=""
}
trap 'stop_server; rm -rf "$WORK"' EXIT
trap 'exit 1' INT TERM

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The dataset as RESP commands for redis-cli --pipe (MODE=write), the
# commands that read it back (MODE=read), the replies expected to those in
# redis-cli --raw form (MODE=expect), and the mutations (MODE=mutate).
# Everything is derived from the key's number, so the expectation needs no
# server. Types by i % 10: 0-5 string, 6 list, 7 hash, 8 set, 9 sorted set.
cat > "$WORK/dataset.awk" <<'AWK'
function rep(len,   s) { s = base; while (length(s) < len) s = s base; return substr(s, 1, len) }
function val(k, len) { return k ":" substr(rep(len + 4096), 1 + (k * 13) % 4096, len) }
function resp(n, a,   i, s) {
  s = "*" n "\r\n"
  for (i = 1; i <= n; i++) s = s "$" length(a[i]) "\r\n" a[i] "\r\n"
  printf "%s", s
}
function strlen_of(i) { return (i % 1000 == 3) ? 65536 + i : 1 + (i * 7919) % 1500 }
function members(i) {
  t = i % 10
  if (t == 6) return 1 + i % 40          # list: listpack / quicklist
  if (t == 7) return 1 + i % 200         # hash: listpack up to 128 fields, then hashtable
  if (t == 8) return 1 + i % 300         # set: intset or hashtable
  return 1 + i % 150                     # sorted set: listpack up to 128, then skiplist
}
function member(i, j) { return (i % 20 == 8) ? i * 1000 + j : "m" j "-" i }
BEGIN {
  x = 42; base = ""
  for (c = 0; c < 4096; c++) { x = (x * 1103515245 + 12345) % 2147483648; base = base substr("abcdefghijklmnopqrstuvwxyz0123456789", 1 + int(x / 65536) % 36, 1) }
  batch = ""; nb = 0
  for (i = 0; i < N; i++) {
    t = i % 10; m = members(i)
    if (t <= 5) {
      if (MODE == "write") { a[1] = "SET"; a[2] = "s:" i; a[3] = val(i, strlen_of(i)); resp(3, a) }
      else if (MODE == "expect") print val(i, strlen_of(i))
      else if (MODE == "read") { batch = batch " s:" i; if (++nb == 1000) { print "MGET" batch; batch = ""; nb = 0 } }
      else if (MODE == "mutate") {
        if (i % 3 == 0) { a[1] = "DEL"; a[2] = "s:" i; resp(2, a) }
        else if (i % 3 == 1) { a[1] = "APPEND"; a[2] = "s:" i; a[3] = "-appended-" i; resp(3, a) }
      }
      continue
    }
    if (MODE == "read" && nb > 0) { print "MGET" batch; batch = ""; nb = 0 }
    if (MODE == "write") {
      n = 2
      if (t == 6) { a[1] = "RPUSH"; a[2] = "l:" i; for (j = 0; j < m; j++) a[++n] = val(i * 100 + j, 1 + (j * 31) % 200) }
      if (t == 7) { a[1] = "HSET"; a[2] = "h:" i; for (j = 0; j < m; j++) { a[++n] = "f" j; a[++n] = val(i + j, 1 + (i + j) % 60) } }
      if (t == 8) { a[1] = "SADD"; a[2] = "t:" i; for (j = 0; j < m; j++) a[++n] = member(i, j) }
      if (t == 9) { a[1] = "ZADD"; a[2] = "z:" i; for (j = 0; j < m; j++) { a[++n] = j; a[++n] = member(i, j) } }
      resp(n, a)
    } else if (MODE == "read") {
      if (t == 6) print "LRANGE l:" i " 0 -1"
      if (t == 7) { s = "HMGET h:" i; for (j = 0; j < m; j++) s = s " f" j; print s }
      if (t == 8) { print "SCARD t:" i; s = "SMISMEMBER t:" i; for (j = 0; j < m; j++) s = s " " member(i, j); print s }
      if (t == 9) print "ZRANGE z:" i " 0 -1 WITHSCORES"
    } else if (MODE == "expect") {
      if (t == 6) for (j = 0; j < m; j++) print val(i * 100 + j, 1 + (j * 31) % 200)
      if (t == 7) for (j = 0; j < m; j++) print val(i + j, 1 + (i + j) % 60)
      if (t == 8) { print m; for (j = 0; j < m; j++) print 1 }
      if (t == 9) for (j = 0; j < m; j++) { print member(i, j); print j }
    } else if (MODE == "mutate") {
      if (t == 6) { a[1] = "LPOP"; a[2] = "l:" i; a[3] = 2; resp(3, a) }
      if (t == 7) { a[1] = "HDEL"; a[2] = "h:" i; a[3] = "f0"; a[4] = "f2"; a[5] = "f4"; resp(5, a) }
      if (t == 8) { a[1] = "SREM"; a[2] = "t:" i; a[3] = member(i, 0); a[4] = member(i, m - 1); resp(4, a) }
      if (t == 9) { a[1] = "ZREM"; a[2] = "z:" i; a[3] = member(i, 1); resp(3, a) }
    }
  }
  if (MODE == "read" && nb > 0) print "MGET" batch
}
AWK
gen() { LC_ALL=C awk -v N="$KEYS" -v MODE="$1" -f "$WORK/dataset.awk"; }
SECONDS=0
gen write > "$WORK/write.resp"
gen read > "$WORK/read.cmds"
gen expect > "$WORK/expect1.txt"
gen mutate > "$WORK/mutate.resp"
echo "dataset generated: $(wc -c < "$WORK/write.resp") bytes of commands, ${SECONDS}s" >&2

# start_server NAME [VAR=VALUE...]: sets PORT and SERVER_PID.
start_server() {
  local name=$1 dir="$WORK/$1.dir" _attempt _i; shift
  mkdir -p "$dir"
  for _attempt in 1 2 3 4 5; do
    PORT=$(free_port)
    env "$@" redis-server --port "$PORT" --bind 127.0.0.1 --protected-mode no --save '' --appendonly no \
      --dir "$dir" --logfile "$dir/redis.log" --daemonize no --enable-debug-command local \
      > "$WORK/$name.server.out" 2> "$WORK/$name.server.err" &
    SERVER_PID=$!
    for _i in $(seq 100); do
      if [ "$(redis-cli -h 127.0.0.1 -p "$PORT" INFO server 2> /dev/null | tr -d '\r' | sed -n 's/^process_id://p')" = "$SERVER_PID" ]; then
        return 0
      fi
      kill -0 "$SERVER_PID" 2> /dev/null || break
      sleep 0.1
    done
    stop_server
  done
  cat "$WORK/$name.server.err" "$dir/redis.log" >&2 || true
  fail "$name: redis-server did not start"
}

# info FIELD: one field of INFO.
info() { cli INFO all | tr -d '\r' | sed -n "s/^$1://p"; }

# exercise NAME CLIENT_ENV...: the whole scenario against a fresh server; its
# comparable results go to $WORK/NAME.results.
exercise() {
  local name=$1 out="$WORK/$1.results" d n; shift
  CLIENT_ENV=("$@")
  cli() { env "${CLIENT_ENV[@]}" redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }
  : > "$out"
  local mem_start mem_loaded mem_mutated mem_flushed bench_lines=0
  mem_start=$(info used_memory)

  for d in $SIZES; do
    env "${CLIENT_ENV[@]}" redis-benchmark -h 127.0.0.1 -p "$PORT" -q -n "$REQUESTS" -t "$BENCH_TESTS" \
      -d "$d" -r 20000 -c 20 -P "$PIPELINE" > "$WORK/$name.bench.$d" 2> "$WORK/$name.bench.$d.err" \
      || { cat "$WORK/$name.bench.$d.err" >&2; fail "$name: redis-benchmark -d $d failed"; }
    # -q prints one "TEST: N requests per second" line per test (after \r progress lines).
    n=$(tr '\r' '\n' < "$WORK/$name.bench.$d" | grep -c 'requests per second' || true)
    [ "$n" -eq 7 ] || { cat "$WORK/$name.bench.$d" >&2; fail "$name: redis-benchmark -d $d: $n of 7 tests reported"; }
    bench_lines=$((bench_lines + n))
  done
  BENCH_COMMANDS=$(info total_commands_processed)
  echo "benchmark tests: $bench_lines" >> "$out"
  echo "$name: after benchmark (${SECONDS}s): dbsize $(cli DBSIZE), commands processed $BENCH_COMMANDS" >&2
  [ "$(cli FLUSHALL SYNC)" = OK ] || fail "$name: FLUSHALL failed"

  # Phase 1: the dataset, read back and checked against its definition.
  cli --pipe < "$WORK/write.resp" > "$WORK/$name.pipe1" 2>&1 || { cat "$WORK/$name.pipe1" >&2; fail "$name: loading the dataset failed"; }
  grep -q 'errors: 0, replies: ' "$WORK/$name.pipe1" || { cat "$WORK/$name.pipe1" >&2; fail "$name: errors while loading the dataset"; }
  mem_loaded=$(info used_memory)
  echo "$name: dataset loaded (${SECONDS}s)" >&2
  echo "dbsize after load: $(cli DBSIZE)" >> "$out"
  echo "digest after load: $(cli DEBUG DIGEST)" >> "$out"
  cli < "$WORK/read.cmds" > "$WORK/$name.read1" 2> "$WORK/$name.read1.err" || fail "$name: reading the dataset back failed"
  cmp -s "$WORK/$name.read1" "$WORK/expect1.txt" || { diff "$WORK/expect1.txt" "$WORK/$name.read1" | head -c 2000 >&2; fail "$name: the dataset read back differs from what was written"; }
  echo "$name: dataset read back and checked (${SECONDS}s)" >&2
  echo "read back after load: $(md5sum < "$WORK/$name.read1" | cut -c1-32), $(wc -l < "$WORK/$name.read1") lines, equal to the dataset" >> "$out"

  # Phase 2: deletes, appends, pops, removes; compared between the two servers.
  cli --pipe < "$WORK/mutate.resp" > "$WORK/$name.pipe2" 2>&1 || { cat "$WORK/$name.pipe2" >&2; fail "$name: mutating the dataset failed"; }
  grep -q 'errors: 0, replies: ' "$WORK/$name.pipe2" || { cat "$WORK/$name.pipe2" >&2; fail "$name: errors while mutating the dataset"; }
  mem_mutated=$(info used_memory)
  echo "dbsize after mutation: $(cli DBSIZE)" >> "$out"
  echo "digest after mutation: $(cli DEBUG DIGEST)" >> "$out"
  cli < "$WORK/read.cmds" > "$WORK/$name.read2" 2> "$WORK/$name.read2.err" || fail "$name: reading the mutated dataset failed"
  echo "read back after mutation: $(md5sum < "$WORK/$name.read2" | cut -c1-32), $(wc -l < "$WORK/$name.read2") lines" >> "$out"
  echo "error replies: $(info total_error_replies)" >> "$out"
  [ "$(cli FLUSHALL SYNC)" = OK ] || fail "$name: FLUSHALL failed"
  mem_flushed=$(info used_memory)
  echo "$name: mutated, read back and flushed (${SECONDS}s)" >&2
  echo "dbsize after flush: $(cli DBSIZE)" >> "$out"

  # INFO memory: plausible, and back down after FLUSHALL.
  cli INFO memory | tr -d '\r' > "$WORK/$name.info_memory"
  echo "$name: used_memory start $mem_start, loaded $mem_loaded, mutated $mem_mutated, flushed $mem_flushed;" \
       "$(grep -E '^(mem_allocator|used_memory_peak_human|used_memory_rss_human):' "$WORK/$name.info_memory" | tr '\n' ' ')" >&2
  [ "$mem_loaded" -gt $((mem_start + KEYS * 1000)) ] || fail "$name: used_memory $mem_loaded after loading the dataset is implausibly low"
  [ "$mem_flushed" -lt $((mem_start + 4 * 1024 * 1024)) ] || fail "$name: used_memory $mem_flushed after FLUSHALL did not drop back (started at $mem_start)"
  MEM_LOADED=$mem_loaded

  # Clean shutdown.
  cli SHUTDOWN NOSAVE > /dev/null 2>&1 || true
  local rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  [ "$rc" -eq 0 ] || { tail -20 "$WORK/$name.dir/redis.log" >&2; fail "$name: redis-server exited with status $rc"; }
  grep -q 'Redis is now ready to exit' "$WORK/$name.dir/redis.log" || { tail -20 "$WORK/$name.dir/redis.log" >&2; fail "$name: no clean shutdown in the log"; }
  echo "clean shutdown" >> "$out"
}

SECONDS=0
start_server plain
exercise plain
t_plain=$SECONDS
plain_commands=$BENCH_COMMANDS
plain_mem_loaded=$MEM_LOADED

SECONDS=0
server_report="$WORK/server.report"
client_report="$WORK/client.report"
start_server jsm LD_PRELOAD="$LIB" JSMALLOC_STATS_ON_EXIT="$server_report"
exercise jsm LD_PRELOAD="$LIB" JSMALLOC_STATS_ON_EXIT="$client_report"
t_jsm=$SECONDS
jsm_mem_loaded=$MEM_LOADED

same_files "redis results" "$WORK/plain.results" "$WORK/jsm.results"
require_jsmalloc "redis-server" "$server_report" "$WORK/jsm.server.err" "$WORK/jsm.dir/redis.log"
server_reports=$JSM_REPORTS
[ "$server_reports" -eq 1 ] || fail "redis-server: $server_reports reports, expected exactly 1 (the server process)"
errs=("$WORK"/jsm.bench.*.err "$WORK/jsm.read1.err" "$WORK/jsm.read2.err" "$WORK/jsm.pipe1" "$WORK/jsm.pipe2")
require_jsmalloc "redis clients" "$client_report" "${errs[@]}"
# used_memory is computed with malloc_usable_size, so it may differ by the
# allocators' size classes, but not by much.
ratio=$(awk -v a="$jsm_mem_loaded" -v b="$plain_mem_loaded" 'BEGIN { printf "%.3f", a / b }')
awk -v r="$ratio" 'BEGIN { exit !(r > 0.7 && r < 1.4) }' \
  || fail "redis: used_memory with the dataset loaded is $jsm_mem_loaded under JSMalloc vs $plain_mem_loaded without (ratio $ratio)"

echo "ok: redis ($(wc -w <<< "$SIZES") value sizes x 7 benchmark tests x $REQUESTS requests" \
     "($plain_commands / $BENCH_COMMANDS commands processed without / with), $KEYS keys written, read back, mutated and read again;" \
     "$(grep 'dbsize after mutation' "$WORK/jsm.results"); used_memory ratio $ratio;" \
     "server + $JSM_REPORTS client processes reported; ${t_plain}s without, ${t_jsm}s with JSMalloc)"
