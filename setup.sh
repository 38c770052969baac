#!/usr/bin/env bash
# Makes .venv with a Python fcn_jax supports and installs REQUIREMENTS there, every package at the
# version in requirements.lock (the whole resolved set, so next year's install is the one tested).
#
#   bash setup.sh requirements.txt        # fcn_jax
#   bash setup.sh requirements-dev.txt    # fcn_jax + the test tools (+ .venv-torch, see below)
#   bash setup.sh --which                 # only say which Python it would use
#   bash setup.sh --lock                  # after changing a pin: resolve requirements-dev.txt
#                                         # afresh in a new .venv and rewrite requirements.lock
#
# The interpreter: $FCN_JAX_PYTHON if set, else the first of python3.12, python3.13, python3 on
# PATH that is 3.12 or 3.13, else pyenv's 3.12.x / 3.13.x (installed but not on PATH here). It says
# which one it used. An existing .venv of another Python is moved aside to .venv.old, not deleted.
#
# With requirements-dev.txt it also makes .venv-torch, the separate Python 3.11 that runs the
# PyTorch cross-checks and peer benchmarks (benchmarks/torch_peers.py): PyTorch's CPU wheel is
# taken from local disk only (pip --no-index); where there is none (PyPI has only CUDA builds of
# several GB), or no Python 3.11, it says so and those checks are skipped.
set -euo pipefail
cd "$(dirname "$0")"
requirements=${1:?usage: bash setup.sh requirements.txt | requirements-dev.txt | --which | --lock}
lock=
if [ "$requirements" = --lock ]; then lock=1; requirements=requirements-dev.txt; fi
[ "$requirements" = --which ] || [ -f "$requirements" ] || {
  echo "setup.sh: no file $requirements" >&2; exit 2; }
supported='3.12 3.13'

version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true; }
pyenv_root=$( (command -v pyenv >/dev/null && pyenv root) || echo "$HOME/.pyenv")

find_python() {  # $1: space-separated X.Y versions; prints the path of the first match
  local want=$1 candidate v
  if [ -n "${FCN_JAX_PYTHON:-}" ]; then  # the user's choice: that one or an error
    candidate=$(command -v "$FCN_JAX_PYTHON") && v=$(version_of "$candidate")
    case " $want " in *" ${v:-none} "*) echo "$candidate"; return 0;; esac
    echo "setup.sh: FCN_JAX_PYTHON=$FCN_JAX_PYTHON is Python ${v:-?}, not one of $want" >&2
    exit 1
  fi
  for candidate in $(for v in $want; do echo "python$v"; done) python3 \
      $(for v in $want; do ls -d "$pyenv_root"/versions/"$v".*/bin/python 2>/dev/null | sort -V -r; done); do
    candidate=$(command -v "$candidate" 2>/dev/null) || continue
    v=$(version_of "$candidate")
    case " $want " in *" $v "*) echo "$candidate"; return 0;; esac
  done
  return 1
}

python=$(find_python "$supported") || {
  [ -z "${FCN_JAX_PYTHON:-}" ] || exit 1  # find_python said why
  echo "setup.sh: no Python 3.12 or 3.13 found (looked at \$FCN_JAX_PYTHON, python3.12, python3.13," \
       "python3 and $pyenv_root/versions); install one or set FCN_JAX_PYTHON=/path/to/python3.12" >&2
  exit 1; }
echo "setup.sh: using Python $(version_of "$python") at $python"
[ "$requirements" != --which ] || exit 0
[ -z "$lock" ] || rm -rf .venv

make_venv() {  # $1: folder, $2: interpreter
  local have
  if [ -x "$1/bin/python" ]; then
    have=$(version_of "$1/bin/python")
    [ "$have" = "$(version_of "$2")" ] && return 0
    echo "setup.sh: $1 holds Python ${have:-?}; moving it to $1.old"
    rm -rf "$1.old" && mv "$1" "$1.old"
  fi
  "$2" -m venv "$1"
}

pip_quiet() {  # runs pip, showing its output without the local index's noise; fails as pip does
  local log status=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || status=$?
  grep -v -e '^WARNING: Location' -e '^[[:space:]]*$' "$log" >&2 || true
  rm -f "$log"
  return "$status"
}

make_venv .venv "$python"
pip_quiet .venv/bin/python -m pip install -q --upgrade pip==26.3
if [ -n "$lock" ]; then
  pip_quiet .venv/bin/python -m pip install -q -r "$requirements"
  { echo "# Every package of the fcn_jax environment: requirements-dev.txt resolved on Python" \
         "$(version_of .venv/bin/python) by \`bash setup.sh --lock\`;"
    echo "# setup.sh installs with these as pip constraints. Do not edit by hand."
    .venv/bin/python -m pip freeze --exclude-editable; } > requirements.lock
  echo "setup.sh: wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
else
  pip_quiet .venv/bin/python -m pip install -q -r "$requirements" -c requirements.lock
fi

# oneDNN's convolutions (fcn_jax.onednn), compiled once into the cache; where that fails (no C++
# compiler) it says so in one line and fcn_jax runs XLA's own convolutions.
.venv/bin/python -m fcn_jax.onednn build >/dev/null || true

if [ "$requirements" = requirements-dev.txt ]; then
  if torch_python=$(FCN_JAX_PYTHON= find_python 3.11); then
    make_venv .venv-torch "$torch_python"
    if pip_quiet .venv-torch/bin/python -m pip install -q --no-index --no-deps torch==2.13.0 &&
       pip_quiet .venv-torch/bin/python -m pip install -q -r requirements-torch.txt; then
      echo "setup.sh: PyTorch cross-checks run in .venv-torch (Python $(version_of "$torch_python"))"
    else
      echo "setup.sh: PyTorch 2.13.0's CPU wheel is not on local disk: the PyTorch cross-checks" \
           "will be skipped (set FCN_JAX_TORCH_PYTHON to a Python that has torch 2.13 to run them)"
    fi
  else
    echo "setup.sh: no Python 3.11 for PyTorch's CPU wheel: the PyTorch cross-checks will be" \
         "skipped (set FCN_JAX_TORCH_PYTHON to a Python that has torch 2.13 to run them)"
  fi
fi
