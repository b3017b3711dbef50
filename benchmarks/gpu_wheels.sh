#!/usr/bin/env bash
# Download, here, the wheels headlens needs on the GPU machine beyond what its python3 holds
# (it reaches no package registry): omegaconf, its antlr4 runtime, and easy-vqa (the data the
# precision benchmark's trained demo models read). Versions are the ones installed here, for
# CPython 3.12 on manylinux x86_64 (pure-Python wheels come as py3-none-any).
#
#     bash benchmarks/gpu_wheels.sh [--models]
#
# Writes .whl/*.whl (git-ignored); copy .whl/ along to the GPU machine with the working tree, where
# benchmarks/gpu.sh installs them with --no-index. --models also trains the two easy-VQA demo
# models here (a few minutes on a CPU) into .whl/models, which gpu.sh then uses instead of
# training them on the GPU machine (on a busy CPU, OMP_NUM_THREADS=1 trains faster).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEST=.whl
PACKAGES=(omegaconf antlr4-python3-runtime easy-vqa)

version_of() {  # the version installed here, as `pip show` reports it
    "$PYTHON" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'
}

mkdir -p "$DEST"
for name in "${PACKAGES[@]}"; do
    version=$(version_of "$name")
    if [[ -z $version ]]; then
        echo "gpu_wheels.sh: $name is not installed here; install headlens's dependencies first" >&2
        exit 1
    fi
    echo "downloading $name==$version"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$DEST" "$name==$version"
done

if [[ ${1:-} == --models ]]; then
    # The demo's training settings (the cache key): the models gpu.sh's precision step asks for.
    PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$DEST/models" <<'EOF'
import sys
from headlens.demo import Splits, ensure_subject, family_config

splits = Splits()
for family in ("lxmert", "visual_bert"):
    config = family_config(family, ["progress=false", "device=cpu", f"demo.cache_dir={sys.argv[1]}"], quick=False)
    subject, trained = ensure_subject(config, splits)
    print(f"{family}: {subject.folder} ({'trained now' if trained else 'cached'})")
EOF
fi

ls -l "$DEST"
du -sh "$DEST"
