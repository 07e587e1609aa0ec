#!/usr/bin/env bash
# Regenerates tests/golden/<name>/{logits.npy,manifest.json} for the tiny presets.
#
# Usage: tools/oracle/regenerate_goldens.sh [BUILD_DIR]        (default: build)
#
# For each of tiny-v2-lite, tiny-v2, tiny-v3 and tiny-v3 --fp8 (golden name tiny-v3-fp8) it
# runs BUILD_DIR/tools/make_model/moeserve-make-model --preset P --out TMP/<name> --seed 1234 [--fp8]
# and then the oracle (make_golden.py) on that checkpoint into tests/golden/<name>/, and prints
# a summary. Then the MTP oracle (make_mtp_golden.py) writes mtp_logits.npy + mtp_manifest.json
# for the checkpoints with an MTP module: tiny-v3, tiny-v3-fp8 and tiny-v2-lite --mtp-layers 1
# (golden name tiny-v2-lite-mtp). The checkpoints live in a temporary directory that is removed
# on exit.
#
# Environment:
#   ORACLE_PYTHON   python with requirements.txt installed
#                   (default: tools/oracle/.venv/bin/python, else python3)
#   ORACLE_ARGS     extra arguments for make_golden.py (e.g. "--allow-divergence")
#   ORACLE_ALLOW_VERSION_MISMATCH=1  run even if installed versions differ from requirements.txt
#   ORACLE_GOLDEN_DIR  write here instead of tests/golden (for trying the script out)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$PWD/$BUILD" ;; esac
MAKE_MODEL="$BUILD/tools/make_model/moeserve-make-model"
GOLDEN=${ORACLE_GOLDEN_DIR:-$ROOT/tests/golden}
SEED=1234

if [[ ! -x "$MAKE_MODEL" ]]; then
  echo "error: $MAKE_MODEL not found or not executable (build the moeserve-make-model target first)" >&2
  exit 1
fi

if [[ -n "${ORACLE_PYTHON:-}" ]]; then
  PY=$ORACLE_PYTHON
elif [[ -x "$ROOT/tools/oracle/.venv/bin/python" ]]; then
  PY="$ROOT/tools/oracle/.venv/bin/python"
else
  PY=python3
fi

# The goldens must come from the pinned versions.
if ! "$PY" - "$ROOT/tools/oracle/requirements.txt" <<'PYEOF'
import importlib.metadata as md, sys
bad = []
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if have is None or have.split("+")[0] != want:
        bad.append(f"{name}: want {want}, have {have}")
if bad:
    print("version mismatch vs requirements.txt: " + "; ".join(bad), file=sys.stderr)
    sys.exit(1)
PYEOF
then
  if [[ "${ORACLE_ALLOW_VERSION_MISMATCH:-0}" != 1 ]]; then
    echo "error: $PY does not have the pinned oracle versions (see tools/oracle/README.md)," \
         "or set ORACLE_ALLOW_VERSION_MISMATCH=1" >&2
    exit 1
  fi
  echo "warning: continuing with mismatched versions" >&2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/moeserve-goldens.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# name:preset:extra make-model flags
SPECS=(
  "tiny-v2-lite:tiny-v2-lite:"
  "tiny-v2:tiny-v2:"
  "tiny-v3:tiny-v3:"
  "tiny-v3-fp8:tiny-v3:--fp8"
)

mkdir -p "$GOLDEN"
NAMES=()
for spec in "${SPECS[@]}"; do
  IFS=: read -r name preset flags <<<"$spec"
  echo "== $name: moeserve-make-model --preset $preset ${flags}" >&2
  # shellcheck disable=SC2086  # $flags is empty or a single flag
  "$MAKE_MODEL" --preset "$preset" --out "$TMP/$name" --seed "$SEED" $flags
  echo "== $name: oracle" >&2
  rm -rf "${GOLDEN:?}/$name.new"
  # shellcheck disable=SC2086  # ORACLE_ARGS is a word list on purpose
  "$PY" "$ROOT/tools/oracle/make_golden.py" --model "$TMP/$name" --out "$GOLDEN/$name.new" \
    --seed "$SEED" ${ORACLE_ARGS:-}
  rm -rf "${GOLDEN:?}/$name"
  mv "$GOLDEN/$name.new" "$GOLDEN/$name"
  NAMES+=("$name")
done

# name:preset:extra make-model flags, for the MTP goldens (tiny-v3 and tiny-v3-fp8 reuse the
# checkpoints above).
MTP_SPECS=(
  "tiny-v3:tiny-v3:"
  "tiny-v3-fp8:tiny-v3:--fp8"
  "tiny-v2-lite-mtp:tiny-v2-lite:--mtp-layers 1"
)
for spec in "${MTP_SPECS[@]}"; do
  IFS=: read -r name preset flags <<<"$spec"
  if [[ ! -d "$TMP/$name" ]]; then
    # shellcheck disable=SC2086  # $flags is a word list on purpose
    "$MAKE_MODEL" --preset "$preset" --out "$TMP/$name" --seed "$SEED" $flags
  fi
  echo "== $name: MTP oracle" >&2
  mkdir -p "$GOLDEN/$name"
  "$PY" "$ROOT/tools/oracle/make_mtp_golden.py" --model "$TMP/$name" --out "$GOLDEN/$name" \
    --seed "$SEED"
done

"$PY" - "$GOLDEN" "${NAMES[@]}" <<'PYEOF'
import json, os, sys
golden, names = sys.argv[1], sys.argv[2:]
print()
print(f"{'golden':<14} {'architecture':<22} {'fp8':<5} {'logits_shape':<16} {'tau used':>10} {'tf default':>10} "
      f"{'greedy min margins':<20} {'ref checks':<10} {'bytes':>8}")
for n in names:
    d = os.path.join(golden, n)
    m = json.load(open(os.path.join(d, "manifest.json")))
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    rc = m.get("reference_checks")
    ok = "skipped" if rc is None else ("DIVERGED" if m.get("divergences") else "ok")
    margins = ",".join(f"{g['min_margin']:.3g}" for g in m["greedy"])
    print(f"{n:<14} {m['architecture']:<22} {str(m['fp8']):<5} {str(m['logits_shape']):<16} "
          f"{m['softmax_scale']['used']:>10.6g} {m['softmax_scale']['transformers_default']:>10.6g} "
          f"{margins:<20} {ok:<10} {size:>8}")
    for g in m["greedy"]:
        print(f"    greedy prompt {g['prompt_index']}: {g['tokens']}")
print(f"\nwrote {len(names)} goldens under {golden}")
PYEOF
