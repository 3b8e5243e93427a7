# Sourced by the device scripts, on a lent GPU machine (the device tool's `run`), in the checkout's root.
# The machine has Python 3.12 with CUDA PyTorch, OpenCV, SciPy, numba and the rest of the core's needs, but not
# pybullet, moderngl, glcontext, trimesh or gsplat: those travel as wheels in .whl/ and the EGL loaders as
# .deb files in .gl/ (both made by scripts/device/bundle, carried with `carry: [".whl", ".gl", ...]`).
# pybullet publishes no wheel for Python 3.12, so the first run builds one from its trimmed source on the
# machine's cores (about 3 min) and returns it under $OUT; keep it in .whl/ and later runs skip the build.
set -euo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/out/device}
mkdir -p "$OUT"
SITE=/tmp/sixdpose-site

for deb in .gl/*.deb; do dpkg -x "$deb" /; done
ldconfig
NV=/usr/local/nvidia/share
[ -f $NV/glvnd/egl_vendor.d/10_nvidia.json ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$NV/glvnd/egl_vendor.d/10_nvidia.json

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE \
    $(ls .whl/*.whl | grep -v pybullet)
if ls .whl/pybullet-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE .whl/pybullet-*.whl
else
    echo "building pybullet for Python $(python3 -c 'import sys; print(sys.version.split()[0])') on $(nproc) cores"
    start=$SECONDS
    rm -rf /tmp/pybullet-src && mkdir -p /tmp/pybullet-src
    tar xzf .whl/pybullet-*-trimmed.tar.gz -C /tmp/pybullet-src
    # -g0 and a stripped link: the debug build is 140 MB, the stripped one 8 MB.
    (cd /tmp/pybullet-src/pybullet-* && CFLAGS="-g0" LDFLAGS="-s" \
        python3 -m pip wheel -q --no-deps --no-build-isolation -w /tmp/pybullet-wheel . >/tmp/pybullet-build.log 2>&1) \
        || { tail -30 /tmp/pybullet-build.log; exit 1; }
    cp /tmp/pybullet-wheel/pybullet-*.whl "$OUT"/
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE /tmp/pybullet-wheel/*.whl
    echo "pybullet built in $((SECONDS - start)) s: $(ls /tmp/pybullet-wheel)"
fi
export PYTHONPATH=$SITE:$PWD

# The console script, so that training JSONs record `sixdpose ...` as on any other machine.
mkdir -p /tmp/sixdpose-bin
printf '#!/usr/bin/env python3\nimport sys\nfrom ros2_sixdpose.cli import main\nif __name__ == "__main__":\n    sys.exit(main())\n' >/tmp/sixdpose-bin/sixdpose
chmod +x /tmp/sixdpose-bin/sixdpose
export PATH=/tmp/sixdpose-bin:$PATH
python3 -c "import torch, pybullet, moderngl; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, torch.cuda.get_device_name(0), '| pybullet', pybullet.getAPIVersion())"
