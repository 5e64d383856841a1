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

# The Dockerfile's build command, in the copied context, for the image's target: the build
# stage is Alpine, whose host target is x86_64-unknown-linux-musl (static). Here that needs the
# musl standard library (rustup) and a musl C compiler for ring (musl-gcc); without them the
# host target is built instead, and the check says so.
triple=x86_64-unknown-linux-musl
if [[ $(uname -m) == x86_64 ]] && rustup target list --installed 2>/dev/null | grep -qx "$triple" \
  && command -v musl-gcc >/dev/null 2>&1; then
  target_args=(--target "$triple")
  binary="$target/$triple/release/okta-ciam-operator"
else
  echo "no $triple toolchain (rustup target add $triple; apt-get install musl-tools):" \
    "building the host target instead of the image's"
  target_args=()
  binary="$target/release/okta-ciam-operator"
fi
start=$SECONDS
(cd "$context" && CARGO_TARGET_DIR="$target" cargo build --release --locked --offline \
  "${target_args[@]}" --no-default-features --bin okta-ciam-operator)
test -x "$binary"
if [[ ${#target_args[@]} -gt 0 ]]; then
  # The image's runtime stage (distroless/static) has no C library: the binary must need none.
  if ! command -v readelf >/dev/null 2>&1; then
    echo "readelf not found: not checking that the binary is static"
  elif readelf -l "$binary" | grep -q 'Requesting program interpreter'; then
    echo "$binary is dynamically linked; distroless/static cannot run it" >&2
    exit 1
  fi
  "$binary" --version
fi
# The shipped binary carries no emulator: no `emulator` subcommand, no `/__emulator/` controls.
if "$binary" emulator --help >/dev/null 2>&1; then
  echo "$binary has the emulator subcommand; the image must be built without default features" >&2
  exit 1
fi
if grep -q "__emulator" "$binary"; then
  echo "$binary contains the emulator's /__emulator/ controls" >&2
  exit 1
fi
echo "release build of the image's context for ${target_args[1]:-the host target}: ok in $((SECONDS - start))s"
