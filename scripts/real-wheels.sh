#!/usr/bin/env bash
# Checks wheelslim against real GPU/NPU wheels from PyPI, with outside oracles only.
# Not part of ./test.sh: it downloads about 1.1 GiB once (cached outside the repository) and takes
# minutes. The wheels, pinned by version and sha256, are listed in scripts/real-wheels.txt.
#
#   scripts/real-wheels.sh [--quick] [--only NAME]... [--keep] [--strict] [--results FILE] [--list]
#
#   --quick         only the wheels flagged `quick` (the smallest of each class)
#   --only NAME     only this wheel (repeatable); NAME is the first column of the list
#   --keep          keep the work folder (outputs, logs, oracle descriptions) and print its path
#   --strict        count KNOWN-ISSUE lines as failures
#   --results FILE  also write every result as tab-separated lines (wheel, check, status, detail)
#   --list          print the wheel names and exit
#
# Environment: WHEELSLIM_BIN (default: `cargo build` here, then target/debug/wheelslim),
# WHEELSLIM_REAL_CACHE (default ~/.cache/wheelslim-real), WHEELSLIM_CUOBJDUMP and WHEELSLIM_PYTHON
# (from .tools/env.sh; scripts/test-tools.sh installs them when missing).
#
# For every wheel: audit (and --json, counted against cuobjdump), split --dry-run, split into a
# temporary folder, trim to an architecture the wheel carries (when it has device code), and for
# the vendor's own wheels split --upstream; wheels flagged `debug` are also split and trimmed
# with --strip-debug. Every output set is then checked with readelf,
# eu-elflint (no complaint the input did not have), cuobjdump / clang-offload-bundler (device code
# kept as asked), pip install into a fresh venv (--no-index --find-links), ldd of the installed set
# against the installed input (no NEEDED newly "not found"), LD_BIND_NOW=1 dlopen of every library
# that loaded from the input, and wheelslim verify --baseline INPUT (what the input already
# violated is inherited, as split judges it).
#
# Each check prints PASS, FAIL, KNOWN-ISSUE (a failure listed in scripts/real-wheels-known.txt with
# the item of issue 10 it belongs to) or SKIP (the check cannot run here; not counted as a pass).
# Exit status: 0 when nothing failed unexpectedly, 1 otherwise, 2 on a usage or setup error.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
list="$here/real-wheels.txt"
known="$here/real-wheels-known.txt"
helper="$here/real-wheels.py"
cache="${WHEELSLIM_REAL_CACHE:-$HOME/.cache/wheelslim-real}"

quick=0 keep=0 strict=0 results="" only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --only) [ $# -ge 2 ] || { echo "--only needs a wheel name" >&2; exit 2; }; only+=("$2"); shift ;;
    --only=*) only+=("${1#--only=}") ;;
    --keep) keep=1 ;;
    --strict) strict=1 ;;
    --results) [ $# -ge 2 ] || { echo "--results needs a file" >&2; exit 2; }; results="$2"; shift ;;
    --list) grep -v '^\s*#' "$list" | awk 'NF {print $1}'; exit 0 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ ${#only[@]} -gt 0 ]; then
  for n in "${only[@]}"; do
    grep -v '^\s*#' "$list" | awk '{print $1}' | grep -qxF "$n" || { echo "no wheel named $n in $list (see --list)" >&2; exit 2; }
  done
fi

# Outside tools.
if [ -z "${WHEELSLIM_CUOBJDUMP:-}" ] || [ -z "${WHEELSLIM_PYTHON:-}" ]; then
  if [ -f "$root/.tools/env.sh" ]; then
    . "$root/.tools/env.sh"
  else
    env_file="$("$root/scripts/test-tools.sh")" || { echo "scripts/test-tools.sh failed" >&2; exit 2; }
    . "$env_file"
  fi
fi
export WHEELSLIM_CUOBJDUMP WHEELSLIM_NO_PROGRESS=1
PY="$WHEELSLIM_PYTHON"
for t in readelf eu-elflint ldd objcopy clang-offload-bundler-19 unzip sha256sum; do
  command -v "$t" >/dev/null || { echo "missing tool: $t (scripts/test-tools.sh installs it)" >&2; exit 2; }
done
[ -x "$WHEELSLIM_CUOBJDUMP" ] || { echo "cuobjdump not found at $WHEELSLIM_CUOBJDUMP" >&2; exit 2; }

# The binary under test.
if [ -n "${WHEELSLIM_BIN:-}" ]; then
  bin="$WHEELSLIM_BIN"
else
  (cd "$root" && cargo build --locked -q) || { echo "cargo build failed" >&2; exit 2; }
  bin="$root/target/debug/wheelslim"
fi
[ -x "$bin" ] || { echo "wheelslim binary not found: $bin" >&2; exit 2; }
# the last commit that changed wheelslim itself (scripts and docs do not change the results)
commit="$(git -C "$root" log -1 --format=%h -- src Cargo.toml Cargo.lock profiles 2>/dev/null)"
[ -n "$commit" ] || commit=unknown
[ -n "${WHEELSLIM_BIN:-}" ] && commit="$commit?" # a given binary may be from elsewhere

work="$(mktemp -d "${TMPDIR:-/tmp}/wheelslim-real.XXXXXX")"
if [ $keep = 1 ]; then
  trap 'echo "work folder kept: $work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$cache"
[ -n "$results" ] && : > "$results"
npass=0 nfail=0 nknown=0 nskip=0 failures=()
limit=104857600 # PyPI's default per-file limit, 100 MiB

# result WHEEL CHECK STATUS DETAIL
result() {
  local w="$1" c="$2" s="$3" d="$4" item="" exact=""
  item="$(awk -v w="$w" -v c="$c" '!/^\s*#/ && NF >= 3 && ($1 == w || $1 == "*") && $2 == c {print $3; exit}' "$known" 2>/dev/null)"
  exact="$(awk -v w="$w" -v c="$c" '!/^\s*#/ && NF >= 3 && $1 == w && $2 == c {print $3; exit}' "$known" 2>/dev/null)"
  if [ "$s" = FAIL ] && [ -n "$item" ] && [ $strict = 0 ]; then
    s=KNOWN-ISSUE
    d="(issue 10 item $item) $d"
  elif [ "$s" = PASS ] && [ -n "$exact" ]; then
    d="$d [listed as known issue $item in $(basename "$known"): remove that line]"
  fi
  case "$s" in
    PASS) npass=$((npass + 1)) ;;
    FAIL) nfail=$((nfail + 1)); failures+=("$w $c") ;;
    KNOWN-ISSUE) nknown=$((nknown + 1)) ;;
    SKIP) nskip=$((nskip + 1)) ;;
  esac
  printf '%-11s %-16s %-28s %s\n' "$s" "$w" "$c" "$d"
  [ -n "$results" ] && printf '%s\t%s\t%s\t%s\n' "$w" "$c" "$s" "$d" >> "$results"
  return 0
}

mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
sizes() { local t=0 f; for f in "$@"; do [ -f "$f" ] && t=$((t + $(stat -c %s "$f"))); done; echo "$t"; }
# the first error line wheelslim printed, with its hint
# (audit prints the errors of unreadable members in its report on stdout, so look at both)
errtext() {
  local e all="${1%.err}"
  all="$(cat "$all.err" "$all.out" 2>/dev/null)"
  e="$(grep -m1 -E '^\s*error' <<<"$all" | sed 's/^\s*//')"
  [ -n "$e" ] || e="$(grep -v '^\s*$' "$1" | tail -n 1 | sed 's/^\s*//')"
  local h; h="$(grep -m1 -E '^\s*hint' <<<"$all" | sed 's/^\s*//')"
  local n; n="$(grep -c -E '^\s*error' <<<"$all")"
  printf '%s%s%s' "${e:0:400}" "${h:+ | ${h:0:200}}" "$([ "$n" -gt 1 ] && echo " | ($n errors)")"
}

# ws LOG ARGS...: run wheelslim, one job, stdout/stderr into $wd/LOG.{out,err}; sets rc and secs
ws() {
  local log="$1"; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" --no-progress -j 1 "$@" > "$wd/$log.out" 2> "$wd/$log.err"
  rc=$?
  t1=$(date +%s.%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
  return 0
}

# install WHEELS... into a fresh venv at $1; prints the site folder; returns pip's status
install_set() {
  local venv="$1"; shift
  "$PY" -m venv --without-pip "$venv" >/dev/null 2>&1 || return 3
  local links=() d
  for d in $(for f in "$@"; do dirname "$f"; done | sort -u); do links+=(--find-links "$d"); done
  "$PY" -m pip --python "$venv/bin/python" install --quiet --disable-pip-version-check --no-index \
    "${links[@]}" --no-deps --no-compile "$@" > "$venv.log" 2>&1
  local st=$?
  "$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])'
  return $st
}

# oracles LABEL MODE TRIMARG OUTPUT-WHEELS...: every outside check of one output set
oracles() {
  local label="$1" mode="$2" targ="$3"; shift 3
  local outs=("$@") tree="" site="" st line opt=()
  case "$targ" in sm=*) opt=(--sm "${targ#sm=}") ;; gfx=*) opt=(--gfx "${targ#gfx=}") ;; esac
  if [ $native = 1 ]; then
    site="$(install_set "$wd/venv-$label" "${outs[@]}")"; st=$?
    if [ $st = 0 ]; then
      result "$name" "$label:pip-install" PASS "$(ls "${outs[@]}" | wc -l) wheel(s) installed into a fresh venv"
      tree="$site"
      line="$("$PY" "$helper" reqs "$whl" "$site" "${outs[@]}" 2>&1)"
      result "$name" "$label:requires" "$(cut -f1 <<<"$line")" "$(cut -f3- <<<"$line")"
    else
      result "$name" "$label:pip-install" FAIL "$(grep -m1 -iE 'error' "$wd/venv-$label.log" | cut -c1-300)"
      tree=""
    fi
  else
    result "$name" "$label:pip-install" SKIP "wheel for $(echo "$plat" | sed 's/.*_\(x86_64\|aarch64\)$/\1/'), not this machine"
  fi
  if [ -z "$tree" ]; then
    tree="$wd/unz-$label"
    mkdir -p "$tree"
    local o; for o in "${outs[@]}"; do unzip -qo "$o" -d "$tree"; done
  fi
  "$PY" "$helper" probe "$tree" "$wd/$label.json" $([ $native = 1 ] && echo --native) --python "$PY" \
    || { result "$name" "$label:probe" FAIL "the oracle probe failed on $tree"; return; }
  while IFS=$'\t' read -r s c d; do
    if [ "$c" = ptx ] && [ "$s" = FAIL ] && said_ptx "$d" "$wd/$label.out" "$wd/$label.err"; then
      s=PASS d="$d (and wheelslim said so)"
    fi
    result "$name" "$label:$c" "$s" "$d"
  done < <("$PY" "$helper" compare "$mode" "$base" "$wd/$label.json" "${opt[@]}")
  # verify --baseline INPUT: what the input already violated is inherited, as split judges it
  ws "$label-verify" verify --baseline "$whl" "${outs[@]}"
  if [ $rc = 0 ]; then
    local inh; inh="$(grep -c -E '^\s*inherited' "$wd/$label-verify.out")"
    [ "$inh" = 0 ] && inh=""
    result "$name" "$label:verify" PASS "wheelslim verify --baseline INPUT: $(tail -n 1 "$wd/$label-verify.out")${inh:+ ($inh inherited finding line(s))}"
  elif [ $rc = 1 ] && [ $verify_in_rc = 1 ]; then
    # what is left is not inherited; only the size rules (never inherited: a trim may leave a
    # wheel over the limit, as the input was) may still be findings the input had
    local new; new="$(comm -13 <(vfindings "$wd/verify-input.out") <(vfindings "$wd/$label-verify.out" | grep -v '^inherited'))"
    if [ -z "$new" ]; then
      result "$name" "$label:verify" PASS "verify --baseline exit 1 with only findings the input had ($(vfindings "$wd/$label-verify.out" | grep -vc '^inherited'))"
    else
      result "$name" "$label:verify" FAIL "exit 1, $(wc -l <<<"$new") finding(s) the input did not have: $(head -n 3 <<<"$new" | tr '\n' ' ' | cut -c1-400)"
    fi
  else
    result "$name" "$label:verify" FAIL "exit $rc (input: exit $verify_in_rc): $(errtext "$wd/$label-verify.err") $(vfindings "$wd/$label-verify.out" | head -n 2 | tr '\n' ' ' | cut -c1-300)"
  fi
}

# said_ptx DETAIL FILES...: did wheelslim name every library that lost its PTX, on a line about PTX/JIT?
said_ptx() {
  local d="$1" lib; shift
  for lib in $(grep -oE '[^/ ;]+\.so[^ ;]*' <<<"$d" | sort -u); do
    cat "$@" 2>/dev/null | grep -F -- "$lib" | grep -qiwE 'ptx|jit' || return 1
  done
  return 0
}

# verify's findings, one a line, without wheel names (a split may reorder the platform tags),
# numbers and search paths
vfindings() {
  grep -vE ': (ok|FAILED)$|checked: ' "$1" \
    | sed -E 's#[^ !]*\.whl!#WHEEL!#g; s#[^ ]*\.whl#WHEEL#g; s/ \(searched .*\)$//; s/[0-9]+/N/g; s/^\s+//' | sort -u
}

check_wheel() {
  name="$1" spec="$2" plat="$3" targ="$4" flags="$5" sha="$6" file="$7"
  wd="$work/$name"; mkdir -p "$wd"
  whl="$cache/$file"
  echo "== $name ($spec, $file)"
  # fetch, pinned by sha256
  if [ ! -f "$whl" ] || [ "$(sha256sum "$whl" | cut -d' ' -f1)" != "$sha" ]; then
    rm -f "$whl"
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --platform "$plat" --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
      -d "$cache" "$spec" > "$wd/fetch.log" 2>&1
  fi
  if [ ! -f "$whl" ]; then
    result "$name" fetch FAIL "pip download $spec did not give $file: $(tail -n 1 "$wd/fetch.log")"; return
  fi
  local got; got="$(sha256sum "$whl" | cut -d' ' -f1)"
  if [ "$got" != "$sha" ]; then
    result "$name" fetch FAIL "sha256 of $file is $got, the list pins $sha"; return
  fi
  local insize; insize=$(stat -c %s "$whl")
  result "$name" fetch PASS "$(mib "$insize"), sha256 ok"
  native=0
  case "$plat" in *"$(uname -m)"|any) native=1 ;; esac

  # the input, described by the oracles (installed with pip where this machine can)
  local site="" tree
  if [ $native = 1 ]; then
    site="$(install_set "$wd/venv-input" "$whl")" || site=""
  fi
  if [ -n "$site" ]; then tree="$site"; else tree="$wd/unz-input"; mkdir -p "$tree"; unzip -qo "$whl" -d "$tree"; fi
  base="$wd/input.json"
  "$PY" "$helper" probe "$tree" "$base" $([ $native = 1 ] && echo --native) --python "$PY"
  ws verify-input verify "$whl"; verify_in_rc=$rc

  # audit
  ws audit audit "$whl"
  if [ $rc = 0 ]; then
    result "$name" audit PASS "${secs}s, $(wc -l < "$wd/audit.out") lines"
  else
    result "$name" audit FAIL "exit $rc: $(errtext "$wd/audit.err")"
  fi
  ws audit-json --json audit "$whl"
  line="$("$PY" "$helper" audit-count "$wd/audit-json.out" "$base")"
  result "$name" audit-vs-cuobjdump "$(cut -f1 <<<"$line")" "$(cut -f3- <<<"$line")"

  # split --dry-run, then split
  ws split-dry split --dry-run -w "$wd/dry/main" --runtime-dir "$wd/dry/rt" "$whl"
  local dry_rc=$rc
  if [ $rc = 0 ] && [ -z "$(find "$wd/dry" -type f 2>/dev/null)" ]; then
    result "$name" split-dry PASS "${secs}s, wrote nothing"
  elif [ $rc = 0 ]; then
    result "$name" split-dry FAIL "--dry-run wrote files: $(find "$wd/dry" -type f | head -3 | tr '\n' ' ')"
  elif [[ ",$flags," == *,oversize,* ]] && [ -z "$(find "$wd/dry" -type f 2>/dev/null)" ] \
    && grep -qiE 'limit|max-size' "$wd/split-dry.err"; then
    # the dry run refuses what the real split will refuse (dry-vs-split checks they agree)
    result "$name" split-dry PASS "refused for size as expected, exit $rc after ${secs}s, wrote nothing: $(errtext "$wd/split-dry.err")"
  else
    result "$name" split-dry FAIL "exit $rc: $(errtext "$wd/split-dry.err")"
  fi
  ws split split -w "$wd/split/main" --runtime-dir "$wd/split/rt" "$whl"
  local split_rc=$rc outs=()
  mapfile -t outs < <(find "$wd/split" -name '*.whl' 2>/dev/null | sort)
  if [ $rc = 0 ]; then
    local big; big="$(for o in "${outs[@]}"; do stat -c %s "$o"; done | sort -rn | head -1)"
    local what="${secs}s, $(mib "$insize") -> ${#outs[@]} wheel(s) $(mib "$(sizes "${outs[@]}")") in all, largest $(mib "${big:-0}")"
    if [ "${big:-0}" -gt $limit ]; then
      result "$name" split FAIL "exit 0 but an output is over the $(mib $limit) limit: $what"
    else
      result "$name" split PASS "$what"
    fi
  elif [[ ",$flags," == *,oversize,* ]] && [ ${#outs[@]} = 0 ] && grep -qiE 'limit|max-size' "$wd/split.err"; then
    # over PyPI's limit, and only a trim can make it fit: the refusal is the right answer
    result "$name" split PASS "refused for size as expected, exit $rc after ${secs}s: $(errtext "$wd/split.err")"
  else
    result "$name" split FAIL "exit $rc after ${secs}s: $(errtext "$wd/split.err")"
  fi
  if [ $dry_rc = 0 ] && [ $rc != 0 ]; then
    result "$name" dry-vs-split FAIL "split --dry-run exited 0, split exited $rc"
  elif [ $dry_rc != 0 ] && [ $rc = 0 ]; then
    result "$name" dry-vs-split FAIL "split --dry-run exited $dry_rc, split exited 0"
  else
    result "$name" dry-vs-split PASS "both exit $rc"
  fi
  local cuda; cuda="$(tr ',' '\n' <<<"$flags" | sed -n 's/^cuda=//p')"
  if [ $rc = 0 ] && [ ${#outs[@]} -gt 0 ]; then
    if [ -n "$cuda" ]; then
      line="$("$PY" "$helper" cuda-major "$cuda" "${outs[@]}")"
      result "$name" split:cuda-major "$(cut -f1 <<<"$line")" "$(cut -f3- <<<"$line")"
    fi
    oracles split split - "${outs[@]}"
    if [[ ",$flags," == *,vendor,* ]]; then
      line="$("$PY" "$helper" keeps "$whl" "$(find "$wd/split/main" -name '*.whl' | head -1)")"
      result "$name" split:vendor-keeps "$(cut -f1 <<<"$line")" "$(cut -f3- <<<"$line")"
    fi
  fi
  if [[ ",$flags," == *,oversize,* ]] && [ "$targ" != - ]; then
    # what a release engineer does next with an oversized wheel: split and trim in one go
    local sopt=(--sm "${targ#sm=}"); [[ "$targ" == gfx=* ]] && sopt=(--gfx "${targ#gfx=}")
    # the dry run estimates the sizes after the trim; it must agree with the real run
    ws split-trim-dry split "${sopt[@]}" --dry-run -w "$wd/split-trim-dry/main" --runtime-dir "$wd/split-trim-dry/rt" "$whl"
    local tdry_rc=$rc tdry_est; tdry_est="$(grep -m1 '(main): about' "$wd/split-trim-dry.out" | sed 's/^size [^ ]* //')"
    ws split-trim split "${sopt[@]}" -w "$wd/split-trim/main" --runtime-dir "$wd/split-trim/rt" "$whl"
    if [ -n "$(find "$wd/split-trim-dry" -type f 2>/dev/null)" ]; then
      result "$name" split-trim-dry FAIL "${sopt[*]} --dry-run wrote files"
    elif [ $tdry_rc = $rc ]; then
      local real_main; real_main="$(find "$wd/split-trim/main" -name '*.whl' -exec stat -c %s {} \; 2>/dev/null | head -1)"
      result "$name" split-trim-dry PASS "${sopt[*]} --dry-run and split both exit $rc; dry run: ${tdry_est:-no estimate}${real_main:+; written main wheel $(mib "$real_main")}"
    else
      result "$name" split-trim-dry FAIL "${sopt[*]} --dry-run exit $tdry_rc, split exit $rc: $(errtext "$wd/split-trim-dry.err")"
    fi
    local souts=(); mapfile -t souts < <(find "$wd/split-trim" -name '*.whl' 2>/dev/null | sort)
    if [ $rc = 0 ] && [ ${#souts[@]} -gt 0 ]; then
      local sbig; sbig="$(for o in "${souts[@]}"; do stat -c %s "$o"; done | sort -rn | head -1)"
      result "$name" split-trim "$([ "$sbig" -gt $limit ] && echo FAIL || echo PASS)" "${sopt[*]}: ${secs}s, $(mib "$insize") -> ${#souts[@]} wheel(s) $(mib "$(sizes "${souts[@]}")") in all, largest $(mib "$sbig")"
      oracles split-trim trim "$targ" "${souts[@]}"
      if [[ ",$flags," == *,vendor,* ]]; then
        line="$("$PY" "$helper" keeps "$whl" "$(find "$wd/split-trim/main" -name '*.whl' | head -1)")"
        result "$name" split-trim:vendor-keeps "$(cut -f1 <<<"$line")" "$(cut -f3- <<<"$line")"
      fi
    else
      result "$name" split-trim FAIL "${sopt[*]}: exit $rc after ${secs}s: $(errtext "$wd/split-trim.err")"
    fi
  fi
  if [[ ",$flags," == *,vendor,* ]]; then
    ws split-upstream split --upstream -w "$wd/up/main" --runtime-dir "$wd/up/rt" "$whl"
    if [ $rc = 0 ]; then
      local ups=(); mapfile -t ups < <(find "$wd/up" -name '*.whl' | sort)
      result "$name" split-upstream PASS "${secs}s, ${#ups[@]} wheel(s)"
      if [ -n "$cuda" ]; then
        line="$("$PY" "$helper" cuda-major "$cuda" "${ups[@]}")"
        result "$name" split-upstream:cuda-major "$(cut -f1 <<<"$line")" "$(cut -f3- <<<"$line")"
      fi
      line="$("$PY" "$helper" self-req "${ups[@]}")"
      result "$name" split-upstream:self-require "$(cut -f1 <<<"$line")" "$(cut -f3- <<<"$line")"
      line="$("$PY" "$helper" keeps "$whl" "$(find "$wd/up/main" -name '*.whl' | head -1)")"
      result "$name" split-upstream:vendor-keeps "$(cut -f1 <<<"$line")" "$(cut -f3- <<<"$line")"
    elif [[ ",$flags," == *,oversize,* ]] && [ -z "$(find "$wd/up" -name '*.whl' 2>/dev/null)" ] \
      && grep -qiE 'limit|max-size' "$wd/split-upstream.err"; then
      # NVIDIA's own oversized wheel keeps its library, so it is as over the limit as before
      result "$name" split-upstream PASS "refused for size as expected, exit $rc: $(errtext "$wd/split-upstream.err")"
    else
      result "$name" split-upstream FAIL "exit $rc: $(errtext "$wd/split-upstream.err")"
    fi
  fi

  # trim to an architecture the wheel carries
  if [ "$targ" != - ]; then
    local topt=(--sm "${targ#sm=}"); [[ "$targ" == gfx=* ]] && topt=(--gfx "${targ#gfx=}")
    ws trim trim "${topt[@]}" -w "$wd/trim" "$whl"
    local touts=(); mapfile -t touts < <(find "$wd/trim" -name '*.whl' 2>/dev/null | sort)
    if [ $rc = 0 ] && [ ${#touts[@]} -gt 0 ]; then
      result "$name" trim PASS "${topt[*]}: ${secs}s, $(mib "$insize") -> $(mib "$(sizes "${touts[@]}")")"
      oracles trim trim "$targ" "${touts[@]}"
    else
      result "$name" trim FAIL "${topt[*]}: exit $rc after ${secs}s: $(errtext "$wd/trim.err")"
    fi
  fi
  if [[ ",$flags," == *,debug,* ]]; then
    # over the limit because of its debug sections: split and trim with --strip-debug
    ws split-debug-dry split --strip-debug --dry-run -w "$wd/split-debug-dry/main" --runtime-dir "$wd/split-debug-dry/rt" "$whl"
    local ddry_rc=$rc ddry_est; ddry_est="$(grep -m1 '(main): about' "$wd/split-debug-dry.out" | sed 's/^size [^ ]* //')"
    ws split-debug split --strip-debug -w "$wd/split-debug/main" --runtime-dir "$wd/split-debug/rt" "$whl"
    local douts=(); mapfile -t douts < <(find "$wd/split-debug" -name '*.whl' 2>/dev/null | sort)
    if [ -n "$(find "$wd/split-debug-dry" -type f 2>/dev/null)" ]; then
      result "$name" split-debug-dry FAIL "--strip-debug --dry-run wrote files"
    elif [ $ddry_rc = $rc ]; then
      result "$name" split-debug-dry PASS "--strip-debug --dry-run and split both exit $rc; dry run: ${ddry_est:-no estimate}"
    else
      result "$name" split-debug-dry FAIL "--strip-debug --dry-run exit $ddry_rc, split exit $rc: $(errtext "$wd/split-debug-dry.err")"
    fi
    if [ $rc = 0 ] && [ ${#douts[@]} -gt 0 ]; then
      local dbig; dbig="$(for o in "${douts[@]}"; do stat -c %s "$o"; done | sort -rn | head -1)"
      result "$name" split-debug "$([ "$dbig" -gt $limit ] && echo FAIL || echo PASS)" "--strip-debug: ${secs}s, $(mib "$insize") -> ${#douts[@]} wheel(s) $(mib "$(sizes "${douts[@]}")") in all, largest $(mib "$dbig")"
      oracles split-debug split - "${douts[@]}"
    else
      result "$name" split-debug FAIL "--strip-debug: exit $rc after ${secs}s: $(errtext "$wd/split-debug.err")"
    fi
    ws trim-debug trim --strip-debug -w "$wd/trim-debug" "$whl"
    local tdouts=(); mapfile -t tdouts < <(find "$wd/trim-debug" -name '*.whl' 2>/dev/null | sort)
    if [ $rc = 0 ] && [ ${#tdouts[@]} -gt 0 ]; then
      result "$name" trim-debug PASS "--strip-debug: ${secs}s, $(mib "$insize") -> $(mib "$(sizes "${tdouts[@]}")")"
      oracles trim-debug split - "${tdouts[@]}"
    else
      result "$name" trim-debug FAIL "--strip-debug: exit $rc after ${secs}s: $(errtext "$wd/trim-debug.err")"
    fi
  fi
  local absent; absent="$(tr ',' '\n' <<<"$flags" | sed -n 's/^absent=//p')"
  if [ -n "$absent" ]; then
    ws trim-absent trim --sm "$absent" -w "$wd/trim-absent" "$whl"
    local aouts=(); mapfile -t aouts < <(find "$wd/trim-absent" -name '*.whl' 2>/dev/null | sort)
    if [ $rc != 0 ]; then
      result "$name" trim-absent PASS "--sm $absent (not carried) refused, exit $rc: $(errtext "$wd/trim-absent.err")"
    elif [ ${#aouts[@]} = 0 ]; then
      result "$name" trim-absent FAIL "--sm $absent: exit 0 and no output"
    else
      local tree2="$wd/unz-absent"; mkdir -p "$tree2"; unzip -qo "${aouts[0]}" -d "$tree2"
      "$PY" "$helper" probe "$tree2" "$wd/absent.json" --python "$PY"
      local devline; devline="$("$PY" "$helper" compare trim-absent "$base" "$wd/absent.json" --sm "$absent" | grep -P '^\w+\tdevice\t')"
      result "$name" trim-absent "$(cut -f1 <<<"$devline")" "--sm $absent (not carried, default --unmatched keep): exit 0, $(mib "$insize") -> $(mib "$(sizes "${aouts[@]}")"); $(cut -f3- <<<"$devline")"
    fi
  fi

  # the input is never modified
  if [ "$(sha256sum "$whl" | cut -d' ' -f1)" = "$sha" ]; then
    result "$name" input-unchanged PASS "sha256 still $sha"
  else
    result "$name" input-unchanged FAIL "the input wheel changed while wheelslim ran"
  fi
  [ $keep = 1 ] || rm -rf "$wd"
}

echo "wheelslim $("$bin" --version 2>/dev/null | awk '{print $2}') at commit $commit ($bin); cache $cache"
t_start=$(date +%s)
while read -r name spec plat targ flags sha file rest; do
  [ -z "$name" ] || [[ "$name" == \#* ]] && continue
  if [ ${#only[@]} -gt 0 ]; then
    printf '%s\n' "${only[@]}" | grep -qxF "$name" || continue
  elif [ $quick = 1 ]; then
    [[ ",$flags," == *,quick,* ]] || continue
  fi
  check_wheel "$name" "$spec" "$plat" "$targ" "$flags" "$sha" "$file"
done < "$list"

echo
echo "$npass passed, $nfail failed, $nknown known issues, $nskip skipped ($(( $(date +%s) - t_start ))s, commit $commit)"
if [ $nfail -gt 0 ]; then
  printf 'unexpected failures:\n'; printf '  %s\n' "${failures[@]}"
  exit 1
fi
exit 0
