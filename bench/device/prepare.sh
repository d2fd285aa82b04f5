#!/usr/bin/env bash
# Run HERE (with network to PyPI), before a session's GPU check: fetches the wheels listed in
# bench/device/wheels.txt for the device machine (CPython 3.12, x86-64 manylinux) into .whl/core
# and .whl/chatterbox. `.whl/` is ignored (.git/info/exclude); the device call carries it.
# Usage: bash bench/device/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
PLATFORMS=()
for n in 28 27 24 17 5; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
for group in core chatterbox; do
    mkdir -p ".whl/$group"
    mapfile -t wanted < <(awk -v g="$group" '$1 == g {print $2}' bench/device/wheels.txt)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${PLATFORMS[@]}" -d ".whl/$group" "${wanted[@]}" 2>&1 \
        | grep -v "^WARNING: Location" || true
done
du -sh .whl/core .whl/chatterbox .whl
