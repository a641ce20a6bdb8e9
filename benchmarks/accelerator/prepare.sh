#!/usr/bin/env bash
# Prepares the bundle for the offline GPU run (see README.md here), on a
# connected CPU machine, from the repository root:
#
#     benchmarks/accelerator/prepare.sh
#
# Writes .accel/ (git-ignored, under 60 MiB, carried to the GPU host):
#   .accel/cifar10.tar.gz   CIFAR-10 prepared by tfds as array_record, from
#                           ../shared/data/cifar10-jpeg.tar.gz (or $CIFAR10_JPEG)
#   .accel/wheels/*.whl     CPython 3.12 manylinux x86-64 wheels of every
#                           training-time package the GPU image lacks
# and .accel-image-venv/ (git-ignored, stays here): a Python 3.12 venv holding
# what the GPU image holds (gpu_image.txt), for the CPU rehearsal
# `DRY_RUN=1 benchmarks/accelerator/run.sh` and to work out the wheels.
#
# Needs: the project installed in the current python (with tensorflow-cpu,
# which prepares the data), Python 3.12 (pyenv's 3.12 on these machines),
# network access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."

here=benchmarks/accelerator
accel=.accel
image_venv=.accel-image-venv
cifar10_jpeg=${CIFAR10_JPEG:-${MIMETIC_SHARED_DATA:-../shared/data}/cifar10-jpeg.tar.gz}
python=${PYTHON:-python3}
python312=${PYTHON312:-}
if [[ -z "$python312" ]] && command -v pyenv >/dev/null; then
  version=$(pyenv versions --bare | grep -E '^3\.12(\.|$)' | tail -n 1 || true)
  [[ -n "$version" ]] && python312="$(pyenv root)/versions/$version/bin/python3.12"
fi
[[ -n "$python312" ]] || python312=$(command -v python3.12 || true)
limit_mib=60
# glibc 2.28 or older: any wheel a current x86-64 Linux host can load.
manylinux=(manylinux_2_28_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64)
# What the project needs when training on prepared images, beyond the image.
training_needs=(ml-collections dm-pix tensorflow-datasets array-record
                importlib_resources)

[[ -f "$cifar10_jpeg" ]] || { echo "Error: $cifar10_jpeg not found; set CIFAR10_JPEG to the CIFAR-10 JPEG archive." >&2; exit 1; }
[[ -n "$python312" ]] || { echo "Error: no python3.12 found; set PYTHON312 to a Python 3.12 interpreter." >&2; exit 1; }
rm -rf "$accel"
mkdir -p "$accel/wheels"

echo "== 1/3 CIFAR-10 -> tfds array_record"
tfds_dir=$(mktemp -d)
trap 'rm -rf "$tfds_dir"' EXIT
prepared=$("$python" - "$cifar10_jpeg" "$tfds_dir" <<'PY'
import sys
import ml_collections
from mimetic_jax.data import image_source
config = ml_collections.ConfigDict(dict(
    name="", path=sys.argv[1], data_dir=sys.argv[2]))
print(image_source.get_builder(config).data_path)
PY
)
prepared=$(tail -n 1 <<<"$prepared")
# tfds reads a prepared folder named by its version: cifar10/1.0.0/.
tar -czf "$accel/cifar10.tar.gz" -C "$(dirname "$prepared")" \
    --transform "s,^,cifar10/," "$(basename "$prepared")"

echo "== 2/3 rehearsal venv of the GPU image ($image_venv)"
if [[ ! -x "$image_venv/bin/python" ]]; then
  "$python312" -m venv "$image_venv"
  "$image_venv/bin/pip" install --quiet --upgrade pip
  "$image_venv/bin/pip" install --quiet -r "$here/gpu_image.txt"
fi

echo "== 3/3 wheels of what the image lacks"
# pip's resolver, run against the image's packages, lists exactly what is
# missing (names and versions), following every package's Requires-Dist.
"$image_venv/bin/pip" install --quiet --dry-run \
    --report "$tfds_dir/report.json" "${training_needs[@]}"
# name==version, and whether PyPI has a wheel of it or only an sdist.
mapfile -t missing < <("$image_venv/bin/python" - "$tfds_dir/report.json" <<'PY'
import json, sys
for item in json.load(open(sys.argv[1]))["install"]:
  kind = "wheel" if item["download_info"]["url"].endswith(".whl") else "sdist"
  print(f"{item['metadata']['name']}=={item['metadata']['version']} {kind}")
PY
)
wheels=() sdists=()
for line in "${missing[@]}"; do
  [[ "$line" == *" wheel" ]] && wheels+=("${line% *}") || sdists+=("${line% *}")
done
echo "missing from the image: ${wheels[*]} ${sdists[*]}"
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 \
    "${manylinux[@]/#/--platform=}" --dest "$accel/wheels" "${wheels[@]}"
if (( ${#sdists[@]} )); then
  # Packages published only as sdists (promise): built here, and they must
  # come out pure Python (py3-none-any), i.e. installable on any host.
  "$image_venv/bin/pip" wheel --quiet --no-deps --wheel-dir "$accel/wheels" \
      "${sdists[@]}"
  if ls "$accel/wheels" | grep -v -e 'none-any\.whl$' -e 'cp312-.*x86_64.*\.whl$'; then
    echo "Error: the wheels above are neither pure Python nor CPython 3.12 x86-64." >&2
    exit 1
  fi
fi
printf '%s\n' "${wheels[@]}" "${sdists[@]}" > "$accel/wheels/requirements.txt"

size_kib=$(du -sk "$accel" | cut -f1)
echo "== .accel: $((size_kib / 1024)) MiB"
du -sh "$accel"/wheels/* "$accel"/cifar10.tar.gz | sed "s/^/   /"
if (( size_kib > limit_mib * 1024 )); then
  echo "Error: .accel is $((size_kib / 1024)) MiB, above the ${limit_mib} MiB limit." >&2
  exit 1
fi
