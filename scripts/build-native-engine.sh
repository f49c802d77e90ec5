#!/usr/bin/env bash
# Optional: build llama.cpp's own server from source, for CPUs where it beats the prebuilt
# default engine (xllamacpp, AVX2 only): AVX-512, AVX-VNNI, AMX machines. See docs/engine.md.
#
# The build is portable, never host-native: GGML_NATIVE=OFF with GGML_BACKEND_DL and
# GGML_CPU_ALL_VARIANTS compiles one CPU backend per instruction-set level (SSE4.2 ... AVX-512,
# AMX) and llama.cpp picks the best one the CPU running it supports, at run time. longqa runs
# it as a child process, probes it once per machine and falls back to safe settings (no
# repacked weights, hence no AMX) or to the default engine if it crashes.
#
# Usage: bash scripts/build-native-engine.sh [VERSION]   (default: the pinned llama-cpp-python
# source release, whose vendored llama.cpp is the same generation as xllamacpp's)
#   VARIANTS=all (default) builds every x86-64 CPU variant, picked at run time;
#   VARIANTS=avx2 | avx512 | avx512-vnni builds one named level only (faster to build; the
#   engine then needs a CPU with that level, and longqa falls back to the default otherwise).
# Output: .venv/engine/native/{bin/llama-server, lib/*.so}; then set llm.engine = "native"
# (or leave "auto": a built native engine is used once its probe passed).
# Takes about 20-30 minutes on 2 cores (12 CPU variants), 3-4 minutes on 16.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-0.3.36}"
jobs="${JOBS:-$(nproc)}"
out="$PWD/.venv/engine/native"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
command -v cmake >/dev/null || { echo "cmake is needed: apt-get install cmake (or pip install cmake)"; exit 1; }
echo "fetching llama.cpp sources (llama-cpp-python $version sdist from PyPI)..."
.venv/bin/python -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
  -d "$work" "llama-cpp-python==$version"
tar xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
case "${VARIANTS:-all}" in
  all) cpu=(-DGGML_CPU_ALL_VARIANTS=ON) ;;
  avx2) cpu=(-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON) ;;
  avx512) cpu=(-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=ON) ;;
  avx512-vnni) cpu=(-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=ON
                    -DGGML_AVX512_VNNI=ON) ;;
  *) echo "VARIANTS must be all, avx2, avx512 or avx512-vnni"; exit 1 ;;
esac
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON "${cpu[@]}" \
  -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON -DCMAKE_INSTALL_RPATH='$ORIGIN/../lib' -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON >/dev/null
cmake --build "$work/build" --target llama-server -j "$jobs"
rm -rf "$out" && mkdir -p "$out/bin" "$out/lib"
cp "$work/build/bin/llama-server" "$out/bin/"
cp "$work"/build/bin/*.so* "$out/lib/" 2>/dev/null || true
find "$work/build" -name 'libggml*.so*' -o -name 'libllama*.so*' -o -name 'libmtmd*.so*' | xargs -r cp -t "$out/lib/"
# The CPU backends are loaded at run time from the server's own folder (ggml_backend_load_all).
mv "$out"/lib/libggml-cpu*.so "$out/bin/"
echo "built: $out/bin/llama-server ($(ls "$out/lib" | wc -l) libraries)"
echo "use it: LONGQA_LLM__ENGINE=native (or llm.engine = \"native\" in longqa.toml); 'longqa models' shows the engine in use"
