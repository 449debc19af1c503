#!/usr/bin/env bash
# Build the oomtop OCI image: Debian bookworm's python3 (mmdebstrap), oomtop's own wheel and the wheels of
# its dependencies (PyPI, versions pinned in constraints.txt), one layer (umoci), entry point `oomtop`.
#
#   deploy/image/build.sh [--wheel FILE] OUTDIR
#
# OUTDIR/oci is an OCI image layout with the tags `latest` and oomtop's version (push it with
# `skopeo copy oci:OUTDIR/oci:latest docker://REGISTRY/oomtop:TAG`, or `podman load`/`ctr import` an archive of
# it); OUTDIR/image.env says what was built (sizes, digests, build time).  --wheel takes a wheel made before
# (`python3 -m pip wheel --no-deps -w DIR .`); without it the wheel is built from this checkout.
#
# Needs root, mmdebstrap, umoci and python3 with pip on the build machine; reaches only Debian's archive and
# PyPI.  Idempotent: every run builds anew in a temporary directory (removed on any exit) and replaces
# OUTDIR/oci only when the new image is complete.  What is in the image and why: README.md beside this file.
set -euo pipefail

usage() { echo "usage: $0 [--wheel FILE] OUTDIR" >&2; exit 2; }
wheel=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --wheel) [ $# -ge 2 ] || usage; wheel=$(realpath "$2"); shift 2 ;;
    -h|--help) usage ;;
    -*) usage ;;
    *) [ -z "$out" ] || usage; out=$1; shift ;;
  esac
done
[ -n "$out" ] || usage
[ "$(id -u)" = 0 ] || { echo "$0: needs root (mmdebstrap builds the root filesystem as root)" >&2; exit 1; }
for tool in mmdebstrap umoci python3; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(realpath -m "$out")
suite=bookworm
mirror=${OOMTOP_IMAGE_MIRROR:-http://deb.debian.org/debian}
security=${OOMTOP_IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# Debian's own python3 (3.11 in bookworm), and the two runtime dependencies whose Debian versions are new enough
# (python3-psutil 5.9.4 >= 5.9, python3-aiofiles 23.1 >= 23.1).  Textual (>=8), Rich and prometheus_client
# (>=0.20) are too old in bookworm: they come from PyPI (versions in constraints.txt).
packages=python3,python3-psutil,python3-aiofiles
started=$(date +%s%N)
elapsed() { awk -v a="$started" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/oomtop-image.XXXXXX")
staging="$out/.oci.new.$$"
cleanup() {
  local status=$?
  # mmdebstrap unmounts what it mounted, also when it fails; should a kill have cut it short, nothing mounted
  # below $tmp (the host's /dev, /proc) may be walked into by rm.
  awk -v t="$tmp/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" || true
  done
  rm -rf --one-file-system "$tmp" "$staging"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
mkdir -p "$out"

step() { printf '[%6ss] %s\n' "$(elapsed)" "$*"; }

# 1. The wheels: oomtop's own, and those of its dependencies that Debian's are too old for.
mkdir "$tmp/wheels"
if [ -n "$wheel" ]; then
  cp "$wheel" "$tmp/wheels/"
else
  step "building oomtop's wheel from $repo"
  python3 -m pip wheel -q --no-deps --disable-pip-version-check -w "$tmp/wheels" "$repo" >/dev/null
fi
oomtop_wheel=$(ls "$tmp"/wheels/oomtop-*.whl)
[ "$(echo "$oomtop_wheel" | wc -l)" = 1 ] || { echo "$0: expected one oomtop wheel, got: $oomtop_wheel" >&2; exit 1; }
# pip resolves the wheel's Requires-Dist for the image's interpreter and platform (binary wheels only), with the
# versions of constraints.txt; the wheels of what Debian provides are dropped (the check in the hook proves
# Debian's versions fit).
# pip 23 does not widen a manylinux platform to the older ones it includes: every glibc up to bookworm's 2.36.
arch=$(uname -m)
case "$arch" in x86_64 | aarch64) ;; *) echo "$0: no manylinux wheels for $arch" >&2; exit 1 ;; esac
platforms=()
for minor in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
platforms+=(--platform "manylinux2014_$arch")
step "downloading the wheels oomtop needs (cp311, manylinux <= glibc 2.36, $arch)"
python3 -m pip download -q --disable-pip-version-check --only-binary=:all: "${platforms[@]}" \
  --python-version 3.11 --implementation cp -c "$here/constraints.txt" -d "$tmp/wheels" "$oomtop_wheel" \
  2> >(grep -v "^WARNING: Location" >&2)
rm -f "$tmp"/wheels/psutil-*.whl "$tmp"/wheels/aiofiles-*.whl
python3 - "$here/constraints.txt" "$tmp/wheels" <<'PY'
import os, re, sys
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
pinned = {norm(l.split("==")[0].strip()) for l in open(sys.argv[1]) if "==" in l and not l.startswith("#")}
for wheel in sorted(os.listdir(sys.argv[2])):
    name, version = wheel.split("-")[:2]
    if name != "oomtop" and norm(name) not in pinned:
        print(f"note: {name}=={version} is not pinned in deploy/image/constraints.txt: add it", file=sys.stderr)
PY

# 2. The root filesystem.  The customize hook runs on this machine with the chroot as $1.
cat >"$tmp/customize.sh" <<'EOF'
#!/bin/sh
set -eu
root=$1 wheels=$2
site=$(chroot "$root" python3 -c 'import sys; print("/usr/local/lib/python%d.%d/dist-packages" % sys.version_info[:2])')
mkdir -p "$root$site"
# pip of the build machine installs into the image (the image gets no pip); no dependency resolution here:
# every wheel is given, and the check below proves the set complete.
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-index --no-deps --no-compile \
  --target "$root$site" "$wheels"/*.whl
rm -rf "$root$site/bin"  # console scripts with this machine's interpreter in their #! line
cat >"$root/usr/local/bin/oomtop" <<'SCRIPT'
#!/usr/bin/python3
import sys

from oomtop.cli import main

sys.exit(main())
SCRIPT
chmod 0755 "$root/usr/local/bin/oomtop"
# Byte-compiled by the image's own interpreter: the root filesystem is read-only at run time.
chroot "$root" python3 -m compileall -q -j 0 "$site" >/dev/null
# Every Requires-Dist of every installed distribution is met by what is in the image (Debian's packages too).
python3 - "$root" "$site" <<'CHECK'
import importlib.metadata
import sys

from pip._vendor.packaging.requirements import Requirement

root, site = sys.argv[1], sys.argv[2]
dists = list(importlib.metadata.distributions(path=[root + site, root + "/usr/lib/python3/dist-packages"]))
have = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in dists}
env = {"python_version": "3.11", "python_full_version": "3.11.2", "extra": ""}
problems = []
for dist in dists:
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        got = have.get(req.name.lower().replace("_", "-"))
        if got is None or not req.specifier.contains(got, prereleases=True):
            problems.append(f"{dist.metadata['Name']} needs {req}, the image has {got}")
if problems:
    sys.exit("missing or wrong dependencies in the image:\n  " + "\n  ".join(problems))
CHECK
chroot "$root" /usr/local/bin/oomtop --version
chroot "$root" python3 -c 'import oomtop.ui.app, oomtop.serve, oomtop.record, psutil, aiofiles, prometheus_client'
# What dpkg's path-exclude leaves of the docs (empty directories, links to excluded files), logs and backups of
# the build itself.
chroot "$root" find /usr/share/doc -xtype l -delete
chroot "$root" find /usr/share/doc -mindepth 2 -depth -type d -empty -delete
rm -rf "$root"/var/log/* "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/var/cache/ldconfig/*
EOF
chmod +x "$tmp/customize.sh"

step "mmdebstrap $suite ($packages)"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
TMPDIR="$tmp" mmdebstrap --quiet --variant=essential --include="$packages" \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --dpkgopt='path-exclude=/usr/lib/*/gconv/*' \
  --customize-hook="$tmp/customize.sh \"\$1\" $tmp/wheels" \
  "$suite" "$tmp/rootfs.tar" \
  "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main" </dev/null >"$tmp/mmdebstrap.log" 2>&1 ||
  { tail -40 "$tmp/mmdebstrap.log" >&2; echo "$0: mmdebstrap failed (its last lines above)" >&2; exit 1; }

# 3. The OCI image: one layer, the entry point, and what a reader of the image wants to know.
version=$(basename "$oomtop_wheel" | cut -d- -f2)
step "umoci: OCI layout, tags latest and $version"
umoci init --layout "$staging"
umoci new --image "$staging:$version"
umoci raw add-layer --image "$staging:$version" --history.author "oomtop deploy/image/build.sh" \
  --history.created_by "mmdebstrap $suite ($packages) + $(basename "$oomtop_wheel") + PyPI wheels (constraints.txt)" \
  "$tmp/rootfs.tar"
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
umoci config --image "$staging:$version" --created "$created" --author "oomtop" \
  --architecture "$(dpkg --print-architecture)" --os linux \
  --config.entrypoint /usr/local/bin/oomtop --config.workingdir / \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env LANG=C.UTF-8 --config.env PYTHONDONTWRITEBYTECODE=1 \
  --config.label org.opencontainers.image.title=oomtop \
  --config.label org.opencontainers.image.version="$version" \
  --config.label org.opencontainers.image.description="top for memory cgroups with OOM-kill events" \
  --config.label org.opencontainers.image.licenses=Apache-2.0 \
  --config.label org.opencontainers.image.base.name="debian:$suite"
umoci tag --image "$staging:$version" latest
umoci gc --layout "$staging"

# 4. Sizes, from the layer itself: every file's bytes (the unpacked size) and the compressed blob.
read -r unpacked files < <(python3 - "$tmp/rootfs.tar" <<'PY'
import sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    members = [m for m in tar.getmembers() if m.isfile()]
print(sum(m.size for m in members), len(members))
PY
)
read -r layer_digest layer_bytes < <(python3 - "$staging" <<'PY'
import json, sys
root = sys.argv[1]
index = json.load(open(f"{root}/index.json"))
manifest = index["manifests"][0]["digest"].split(":")[1]
layer = json.load(open(f"{root}/blobs/sha256/{manifest}"))["layers"][0]
print(layer["digest"], layer["size"])
PY
)
[ -n "${unpacked:-}" ] && [ -n "${layer_bytes:-}" ] || { echo "$0: cannot read the image's sizes" >&2; exit 1; }
rm -rf "$out/oci"
mv "$staging" "$out/oci"
seconds=$(elapsed)
cat >"$out/image.env" <<EOF
OOMTOP_IMAGE_LAYOUT=$out/oci
OOMTOP_IMAGE_TAG=latest
OOMTOP_IMAGE_VERSION=$version
OOMTOP_IMAGE_UNPACKED_BYTES=$unpacked
OOMTOP_IMAGE_FILES=$files
OOMTOP_IMAGE_LAYER_BYTES=$layer_bytes
OOMTOP_IMAGE_LAYER_DIGEST=$layer_digest
OOMTOP_IMAGE_BUILD_SECONDS=$seconds
EOF
mib() { awk -v n="$1" 'BEGIN { printf "%.1f", n / 1048576 }'; }
echo "oomtop image: $out/oci:latest (oomtop $version, $(dpkg --print-architecture))"
echo "unpacked size: $(mib "$unpacked") MiB ($unpacked bytes in $files files)"
echo "compressed layer: $(mib "$layer_bytes") MiB ($layer_bytes bytes, $layer_digest)"
echo "build time: $seconds s"
