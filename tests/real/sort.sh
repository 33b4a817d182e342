#!/usr/bin/env bash
# GNU sort of a ~60 MB generated file (sort allocates large buffers).
source "$(dirname "$0")/common.sh"
awk 'BEGIN { x = 12345; for (i = 0; i < 3000000; i++) { x = (x * 1103515245 + 12345) % 2147483648; printf "%d line-%d %x\n", x % 1000000, i, x } }' > "$WORK/input.txt"
run_compare sort sort -k1,1n -k2 "$WORK/input.txt"
run_compare sort_unique sort -u -S 8M "$WORK/input.txt"
