#!/usr/bin/env bash
# Checks that the Dockerfile's build context builds, where docker is not available: copies the
# files `docker build .` would send (the working tree as git sees it, minus .dockerignore) to a
# temporary directory and runs the Dockerfile's release build there, offline, with its own
# target directory. A file the build needs but .dockerignore drops fails this check.
#
#   .ci/check-image-context.sh            # target dir: a temporary one, removed afterwards
#   IMAGE_CHECK_TARGET_DIR=/some/dir .ci/check-image-context.sh
#
# It needs the crates in Cargo.lock already downloaded (cargo fetch), as the build is offline.
# Supported .dockerignore syntax: comments, `*`, `?`, `**`, leading `/`, and `!` exceptions
# (last match wins); a pattern that matches a directory excludes everything under it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

work=$(mktemp -d)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
context="$work/context"
target="${IMAGE_CHECK_TARGET_DIR:-$work/target}"
mkdir -p "$context"

# One .dockerignore pattern as an anchored extended regex over a context-relative path.
pattern_regex() {
  local p=$1 out="" c i
  p=${p#/}
  p=${p%/}
  for ((i = 0; i < ${#p}; i++)); do
    c=${p:i:1}
    if [[ $c == '*' && ${p:i+1:1} == '*' ]]; then
      if [[ ${p:i+2:1} == '/' ]]; then
        out+='(.*/)?'
        i=$((i + 2))
      else
        out+='.*'
        i=$((i + 1))
      fi
    elif [[ $c == '*' ]]; then
      out+='[^/]*'
    elif [[ $c == '?' ]]; then
      out+='[^/]'
    elif [[ $c =~ [].^$+(){}|\\[] ]]; then
      out+="\\$c"
    else
      out+=$c
    fi
  done
  # A match on a directory covers everything below it.
  printf '^%s(/.*)?$' "$out"
}

regexes=()
negated=()
while IFS= read -r line || [[ -n $line ]]; do
  line="${line#"${line%%[![:space:]]*}"}"
  line="${line%"${line##*[![:space:]]}"}"
  [[ -z $line || $line == \#* ]] && continue
  if [[ $line == !* ]]; then
    negated+=(1)
    line=${line#!}
  else
    negated+=(0)
  fi
  regexes+=("$(pattern_regex "$line")")
done < .dockerignore

excluded() {
  local path=$1 out=1 i
  for i in "${!regexes[@]}"; do
    if [[ $path =~ ${regexes[i]} ]]; then
      out=${negated[i]}
    fi
  done
  return "$out"
}

# Tracked files and untracked ones git does not ignore: the working tree without build output.
count=0
while IFS= read -r -d '' path; do
  [[ -e $path ]] || continue
  excluded "$path" && continue
  mkdir -p "$context/$(dirname "$path")"
  cp -p "$path" "$context/$path"
  count=$((count + 1))
done < <(git ls-files -z --cached --others --exclude-standard)
echo "build context: $count files (from $repo, minus .dockerignore)"

# The Dockerfile's build command, in the copied context.
start=$SECONDS
(cd "$context" && CARGO_TARGET_DIR="$target" cargo build --release --locked --offline --bin okta-ciam-operator)
test -x "$target/release/okta-ciam-operator"
echo "release build of the image's context: ok in $((SECONDS - start))s"
