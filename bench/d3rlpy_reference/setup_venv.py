r"""Creates the d3rlpy reference's own virtual environment: bench/d3rlpy_reference/.venv.

  python bench/d3rlpy_reference/setup_venv.py [--venv=DIR] [--force]

`python -m venv DIR`, then `DIR/bin/pip install -r requirements.txt` (the
pinned d3rlpy, PyTorch CPU and what they need). The project's own `.venv` is
never touched. A stamp file (`DIR/.requirements.sha256`) records the
requirements the environment was made from: a re-run with unchanged
requirements does nothing, a changed requirements file reinstalls. Seen on
this machine: about 2 minutes and 1.2 GB (PyTorch's CPU wheel lies on pip's
find-links; see requirements.txt). Needs only the standard library.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VENV = os.path.join(HERE, '.venv')
REQUIREMENTS = os.path.join(HERE, 'requirements.txt')
STAMP = '.requirements.sha256'


def venv_python(venv: str = DEFAULT_VENV) -> str:
  return os.path.join(venv, 'bin', 'python')


def _requirements_hash() -> str:
  with open(REQUIREMENTS, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def is_ready(venv: str = DEFAULT_VENV) -> bool:
  """True if `venv` was made from the current requirements.txt."""
  stamp = os.path.join(venv, STAMP)
  if not (os.path.exists(venv_python(venv)) and os.path.exists(stamp)):
    return False
  with open(stamp) as f:
    return f.read().strip() == _requirements_hash()


def _run(command, what):
  print(f'$ {" ".join(command)}', flush=True)
  start = time.time()
  result = subprocess.run(command, check=False)
  if result.returncode:
    raise RuntimeError(f'{what} failed (exit {result.returncode}): {" ".join(command)}; see '
                       'the lines above (no network to PyPI? a pinned version missing?)')
  print(f'  ({time.time() - start:.0f}s)', flush=True)


def ensure_venv(venv: str = DEFAULT_VENV, force: bool = False) -> str:
  """Makes `venv` if it is missing or stale; returns its python."""
  if not force and is_ready(venv):
    return venv_python(venv)
  if os.path.realpath(venv) == os.path.realpath(sys.prefix):
    raise RuntimeError(f'{venv} is the running environment; refusing to rebuild it')
  if os.path.exists(venv):
    print(f'{venv}: made from other requirements (or unfinished); making it again', flush=True)
    shutil.rmtree(venv)
  # The base interpreter, not a venv's: a venv made from a venv works, but this is plainer.
  base = getattr(sys, '_base_executable', None) or sys.executable
  _run([base, '-m', 'venv', venv], 'python -m venv')
  _run([venv_python(venv), '-m', 'pip', 'install', '--disable-pip-version-check',
        '-r', REQUIREMENTS], 'pip install -r requirements.txt')
  _run([venv_python(venv), '-c', 'import d3rlpy, torch; print("d3rlpy", d3rlpy.__version__, '
        '"torch", torch.__version__)'], 'the import check')
  with open(os.path.join(venv, STAMP), 'w') as f:
    f.write(_requirements_hash() + '\n')
  return venv_python(venv)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--venv', default=DEFAULT_VENV)
  parser.add_argument('--force', action='store_true', help='make it again even if up to date')
  args = parser.parse_args()
  start = time.time()
  python = ensure_venv(args.venv, args.force)
  print(f'd3rlpy environment ready: {python} ({time.time() - start:.0f}s)', flush=True)


if __name__ == '__main__':
  main()
