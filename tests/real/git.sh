#!/usr/bin/env bash
# git on a generated repository: git fast-import of a long generated history,
# then porcelain work in a checkout (branches, commits, an annotated tag, a
# merge, a cherry-pick, a rebase), git gc --aggressive, git fsck --full, and
# output of log/diff/blame/grep/ls-tree/archive/rev-list. Identities, dates
# and configuration are fixed (GIT_CONFIG_NOSYSTEM=1, HOME in the work
# directory, GIT_AUTHOR_DATE / GIT_COMMITTER_DATE per commit), so every
# object hash is deterministic: all of the output, hashes included, must be
# identical with and without JSMalloc (every git process preloaded).
source "$(dirname "$0")/common.sh"
command -v git > /dev/null || fail "git not found (apt-get install git)"

COMMITS=${JSMALLOC_TEST_REAL_GIT_COMMITS:-1500}

# The fast-import stream: COMMITS commits on main, each rewriting three of 60
# files of 120 lines (a few lines changed each time), some commits adding or
# deleting a file; a side branch forks every 500 commits.
LC_ALL=C awk -v N="$COMMITS" '
function content(f,   s, j) { s = ""; for (j = 0; j < 120; j++) s = s "file " f " line " j " " L[f, j] "\n"; return s }
function emit(path, data) { printf "M 100644 inline %s\ndata %d\n%s\n", path, length(data), data }
BEGIN {
  for (f = 0; f < 60; f++) for (j = 0; j < 120; j++) L[f, j] = "v0-" (f * j) % 97
  for (c = 1; c <= N; c++) {
    printf "commit refs/heads/main\nmark :%d\n", c
    printf "author Ada Author <ada@example.org> %d +0000\n", 1600000000 + c * 60
    printf "committer Carl Committer <carl@example.org> %d +0000\n", 1600000000 + c * 60 + 7
    msg = "commit " c ": update files " (c * 7) % 60 ", " (c * 11) % 60 ", " (c * 13) % 60 "\n"
    printf "data %d\n%s", length(msg), msg
    if (c > 1) printf "from :%d\n", c - 1
    for (k = 0; k < 3; k++) {
      f = (c * (7 + 2 * k)) % 60
      for (j = 0; j < 120; j++) if ((j * 31 + c * 17 + k) % 23 == 0) L[f, j] = "v" c "-" k "-" (c * j) % 1009
      emit(sprintf("src/d%d/file%02d.txt", f % 6, f), content(f))
    }
    if (c % 50 == 0) emit(sprintf("docs/note%04d.md", c), "# note " c "\n\nwritten at commit " c "\n")
    if (c % 150 == 0) printf "D docs/note%04d.md\n", c - 100
    printf "\n"
    if (c % 500 == 0) printf "reset refs/heads/side%d\nfrom :%d\n\n", c, c
  }
}' > "$WORK/history.fi"

cat > "$WORK/git-work.sh" <<'SH'
set -euo pipefail
repo=$1
export HOME=$2 GIT_CONFIG_NOSYSTEM=1 LC_ALL=C TZ=UTC GIT_PAGER=cat PAGER=cat
export GIT_AUTHOR_NAME="Ada Author" GIT_AUTHOR_EMAIL=ada@example.org
export GIT_COMMITTER_NAME="Carl Committer" GIT_COMMITTER_EMAIL=carl@example.org
rm -rf "$repo" "$HOME"
mkdir -p "$HOME"
git config --global init.defaultBranch main
git config --global gc.auto 0
git config --global maintenance.auto false
git config --global core.pager cat
git config --global color.ui never
git config --global advice.detachedHead false
git config --global merge.conflictstyle merge
step=0
at() { step=$((step + 1)); export GIT_AUTHOR_DATE="@$((1700000000 + step * 60)) +0000" GIT_COMMITTER_DATE="@$((1700000000 + step * 60 + 5)) +0000"; }
edit() {  # edit FILE SEED: rewrite a few lines of FILE deterministically
  awk -v s="$2" '{ if ((NR * 7 + s) % 11 == 0) print $0 " edited-" s; else print }' "$1" > "$1.new" && mv "$1.new" "$1"
}

git init -q "$repo"
cd "$repo"
git fast-import --quiet < "$3"
git checkout -q -f main
echo "== imported"
git rev-parse main side500 side1000
git rev-list --count --all

# Porcelain: a feature branch off main and more commits on main.
git checkout -q -b feature
for i in $(seq 1 25); do
  edit src/d1/file$(printf %02d $(( (i * 6 + 1) % 60 ))).txt "$i"
  [ $((i % 5)) -eq 0 ] && printf 'feature %d\n' "$i" > "feature-$i.txt"
  git add -A
  at; git commit -q -m "feature $i"
done
git checkout -q main
for i in $(seq 1 25); do
  edit src/d2/file$(printf %02d $(( (i * 6 + 2) % 60 ))).txt "$((100 + i))"
  git add -A
  at; git commit -q -m "main $i"
done
at; git tag -a -m "release before merge" v1.0
at; git merge -q --no-ff -m "merge feature" feature
git checkout -q -b topic side1000
mkdir -p extra
for i in 1 2 3; do
  seq "$i" 7 2000 > "extra/$i.txt"
  git add extra
  at; git commit -q -m "topic $i"
done
at; git rebase -q main
git checkout -q main
at; git cherry-pick topic~1 > /dev/null
echo "== heads"
git rev-parse main feature topic v1.0 v1.0^{commit}

echo "== gc"
git gc -q --aggressive --prune=now
git count-objects -v | grep -E '^(count|in-pack|packs|prune-packable|garbage):'
echo "== fsck"
git fsck --full --strict --no-progress --no-dangling 2>&1
echo "== log"
git log --all --graph --format='%H %P %an %ad %s' --date=raw | md5sum
git log --stat --format='%H %s' main -40
git log --format='%H' --all | wc -l
echo "== diff"
git diff --stat side500 main
git diff side1000 main | md5sum
git diff --numstat v1.0 main
echo "== blame, grep, trees"
git blame --porcelain main -- src/d1/file13.txt | md5sum
git grep -c edited- main | tail -5
git ls-tree -r --long main | md5sum
git archive --format=tar main | md5sum
git rev-list --objects --all | sort | md5sum
SH

run_compare git bash "$WORK/git-work.sh" "$WORK/repo" "$WORK/home" "$WORK/history.fi"
out="$WORK/git.jsm"
fsck=$(sed -n '/^== fsck$/,/^== log$/p' "$out")
[ "$fsck" = "$(printf '== fsck\n== log')" ] || { echo "$fsck" >&2; fail "git: fsck reported problems"; }
commits=$(sed -n '/^== log$/,/^== diff$/p' "$out" | grep -E '^[0-9]+$' | tail -1)
objects=$(sed -n 's/^in-pack: //p' "$out")
echo "ok: git ($COMMITS imported commits, $commits in all, $objects objects packed; hashes identical)"
