#!/usr/bin/env bash
# Build llama.cpp's llama-server from the llama.cpp vendored in the llama-cpp-python sdist (same
# version as the in-process backend), once per machine and CPU feature set. Prints the binary's path.
#   bench/build_peer.sh [VERSION]      (env: BUILD_CACHE, PYTHON, JOBS)
set -euo pipefail
VERSION=${1:-${LLAMA_VERSION:-0.3.36}}
BUILD_CACHE=${BUILD_CACHE:-$HOME/.cache/hushcode-build}
PYTHON=${PYTHON:-python3}
JOBS=${JOBS:-2}
CPU_KEY=$( (grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m) | md5sum | cut -c1-12)
OUT=$BUILD_CACHE/llama-server-$VERSION-$CPU_KEY
BIN=$OUT/llama-server
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9   # two concurrent builds wait for each other instead of racing
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
WORK=$BUILD_CACHE/llama-server-src-$VERSION
mkdir -p "$WORK"
SDIST=$(ls "$WORK"/llama_cpp_python-"$VERSION".tar.gz 2>/dev/null || true)
if [ -z "$SDIST" ]; then
  echo "downloading the llama-cpp-python $VERSION sdist" >&2
  "$PYTHON" -m pip download -q --no-binary :all: --no-deps -d "$WORK" "llama-cpp-python==$VERSION" >&2
  SDIST=$(ls "$WORK"/llama_cpp_python-"$VERSION".tar.gz)
fi
SRC=$WORK/llama_cpp_python-$VERSION
[ -d "$SRC" ] || tar -xzf "$SDIST" -C "$WORK"
LLAMA=$SRC/vendor/llama.cpp
echo "configuring llama.cpp in $LLAMA (log: $OUT/build.log)" >&2
cmake -S "$LLAMA" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF >"$OUT/build.log" 2>&1
echo "building llama-server with $JOBS jobs (about 8 minutes on 2 cores)" >&2
cmake --build "$WORK/build" --target llama-server -j "$JOBS" >>"$OUT/build.log" 2>&1
cp "$WORK/build/bin/llama-server" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "$BIN"
