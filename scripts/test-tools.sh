#!/usr/bin/env bash
# Installs the outside tools the test suite checks wheelslim's outputs with, into .tools/ of the
# checkout (idempotent; a second run only checks). Prints the environment to source.
#
#   - NVIDIA cuobjdump and the CUDA 13 runtime (libcudart.so.13), from PyPI wheels
#   - a Python venv with pip (for installing split outputs into fresh venvs)
#   - Debian packages when missing: binutils (readelf), gcc, clang-19/lld-19, aarch64 and
#     ppc64le cross compilers and sysroots, qemu-user-static (loading aarch64/ppc64le outputs),
#     elfutils (eu-elflint), patchelf (only to build patchelf-edited test inputs)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools"

# Pinned versions; change them together with fixtures/README.md.
CUOBJDUMP_PIN="nvidia-cuda-cuobjdump==13.4.92"
CUDART_PIN="nvidia-cuda-runtime==13.4.92"

python="${PYTHON:-python3}"
if [ ! -x "$tools/venv/bin/python" ]; then
  "$python" -m venv "$tools/venv"
fi
stamp="$tools/venv/.wheelslim-pins"
want="$CUOBJDUMP_PIN $CUDART_PIN"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check $want
  echo "$want" > "$stamp"
fi
site="$("$tools/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cuobjdump="$site/nvidia/cu13/bin/cuobjdump"
cudalib="$site/nvidia/cu13/lib"
[ -x "$cuobjdump" ] || { echo "cuobjdump not found at $cuobjdump" >&2; exit 1; }
[ -e "$cudalib/libcudart.so.13" ] || { echo "libcudart.so.13 not found in $cudalib" >&2; exit 1; }

# Debian packages the tests need. Installed only when missing (needs root and Debian's mirrors).
need=()
command -v readelf >/dev/null || need+=(binutils)
command -v gcc >/dev/null || need+=(gcc)
command -v clang-19 >/dev/null || need+=(clang-19)
command -v ld.lld-19 >/dev/null || need+=(lld-19)
command -v clang-offload-bundler-19 >/dev/null || need+=(clang-tools-19)
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
command -v powerpc64le-linux-gnu-gcc >/dev/null || need+=(gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross)
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need+=(libc6-arm64-cross)
[ -e /usr/aarch64-linux-gnu/lib/libstdc++.so.6 ] || need+=(libstdc++6-arm64-cross)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
[ -e /usr/powerpc64le-linux-gnu/lib/ld64.so.2 ] || need+=(libc6-ppc64el-cross)
command -v eu-elflint >/dev/null || need+=(elfutils)
# patchelf builds patchelf-edited inputs for the rewriter's tests; wheelslim never runs it.
command -v patchelf >/dev/null || need+=(patchelf)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  else
    echo "missing Debian packages: ${need[*]} (install them as root: apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

cat > "$tools/env.sh" <<ENV
export WHEELSLIM_CUOBJDUMP="$cuobjdump"
export WHEELSLIM_CUDA_LIB="$cudalib"
export WHEELSLIM_PYTHON="$tools/venv/bin/python"
export WHEELSLIM_NO_PROGRESS=1
ENV
echo "$tools/env.sh"
