#!/bin/sh
# Build the loxi-cni shim: shim/build/loxi-cni-shim, static, with the machine's C compiler.
#   shim/build.sh                      the product build (static, -O2, warnings are errors)
#   SANITIZE=1 shim/build.sh OUT       AddressSanitizer + UndefinedBehaviorSanitizer (not static)
#   EXTRA_CFLAGS=-DLOXI_ANSWER_TIMEOUT_MS=1000 shim/build.sh OUT   (the tests' short-timeout build)
# The header of shared constants is generated from intent/ and loxi/ by shim/gen_header.py
# with $PYTHON (default: the repository's .venv, else python3).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/build/loxi-cni-shim}
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x "$here/../.venv/bin/python" ]; then python=$here/../.venv/bin/python; else python=python3; fi
fi
cc=${CC:-cc}
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
"$python" "$here/gen_header.py" "$gen/loxi-shim-gen.h"
mkdir -p "$(dirname "$out")"
flags="-std=c11 -O2 -Wall -Wextra -Werror"
if [ "${SANITIZE:-0}" = 1 ]; then
  flags="$flags -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
else
  flags="$flags -static -s"
fi
# shellcheck disable=SC2086
"$cc" $flags ${EXTRA_CFLAGS:-} -I"$gen" -o "$out.tmp" "$here/loxi-shim.c"
mv -f "$out.tmp" "$out"
echo "$out"
