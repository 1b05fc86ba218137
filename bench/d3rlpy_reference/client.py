"""The project-venv side of the action server: a subprocess and a TF-Agents `PyPolicy`.

`ServerProcess` starts a server (`server.py` in the d3rlpy venv, or any
program speaking `protocol.py`) and sends it requests; `ServerPolicy` is a
`py_policy.PyPolicy` whose actions the server chooses, so the project's own
`evaluation.evaluate_policy` (sticky actions, epsilon 0.001 on top, frame
caps, Dopamine's finished last episode) evaluates an external policy exactly
as it evaluates ours.
"""
import os
import subprocess
import sys
import threading
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
from tf_agents.policies import py_policy
from tf_agents.specs import array_spec
from tf_agents.trajectories import policy_step

HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.dirname(os.path.dirname(HERE)) not in sys.path:
  sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from bench.d3rlpy_reference import protocol  # pylint: disable=g-import-not-at-top


class ServerError(RuntimeError):
  """The server failed, exited, or answered with an error (its message and stderr tail)."""


class ServerProcess:
  """A running action server; `request` sends one command and returns its reply."""

  def __init__(self, command: Sequence[str], log_path: Optional[str] = None,
               env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None):
    """Starts `command`; its stderr goes to `log_path` (and the last lines are kept
    for error messages)."""
    self._command = list(command)
    self._log = open(log_path, 'a', encoding='utf-8') if log_path else None
    self._tail = []
    self._proc = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, cwd=cwd)
    self._stderr_thread = threading.Thread(target=self._copy_stderr, daemon=True)
    self._stderr_thread.start()

  def _copy_stderr(self):
    for raw in self._proc.stderr:
      line = raw.decode('utf-8', 'replace')
      self._tail = (self._tail + [line])[-20:]
      if self._log:
        self._log.write(line)
        self._log.flush()

  def _fail(self, what: str) -> ServerError:
    code = self._proc.poll()
    status = f'exited with code {code}' if code is not None else 'still running'
    tail = ''.join(self._tail[-10:]).rstrip()
    return ServerError(f'action server ({self._command[0]} ... ; {status}): {what}'
                       + (f'\n--- its stderr (last lines) ---\n{tail}' if tail else ''))

  def request(self, cmd: str, array: Optional[np.ndarray] = None,
              **fields: Any) -> Tuple[Dict[str, Any], Optional[np.ndarray]]:
    """Sends {"cmd": cmd, **fields} (+ array); returns (reply header, reply array)."""
    try:
      protocol.write_message(self._proc.stdin, dict(fields, cmd=cmd), array)
      header, out = protocol.read_message(self._proc.stdout)
    except (BrokenPipeError, protocol.ProtocolError) as e:
      self._stderr_thread.join(timeout=2)
      raise self._fail(f'{cmd}: {e}') from e
    if not header.get('ok'):
      raise self._fail(f'{cmd} failed: {header.get("error", header)}')
    return header, out

  def close(self, timeout: float = 30.0) -> int:
    """Asks the server to exit (kills it after `timeout`); returns its exit code."""
    if self._proc.poll() is None:
      try:
        protocol.write_message(self._proc.stdin, {'cmd': 'close'})
        protocol.read_message(self._proc.stdout)
      except (BrokenPipeError, OSError, protocol.ProtocolError):
        pass
      try:
        self._proc.wait(timeout)
      except subprocess.TimeoutExpired:
        self._proc.kill()
        self._proc.wait()
    for stream in (self._proc.stdin, self._proc.stdout):
      try:
        stream.close()
      except OSError:
        pass
    self._stderr_thread.join(timeout=5)
    if self._log:
      self._log.close()
      self._log = None
    return self._proc.returncode

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


class ServerPolicy(py_policy.PyPolicy):
  """A greedy `PyPolicy` whose actions come from an action server's `act`.

  Observations (uint8 `[H, W, K]`, or `[B, H, W, K]` for a batched time step)
  are sent as they are; the server answers int64 actions `[B]`.
  """

  def __init__(self, server: ServerProcess, time_step_spec, action_spec):
    if not isinstance(action_spec, array_spec.BoundedArraySpec):
      raise ValueError(f'ServerPolicy needs a bounded action spec, got {action_spec!r}')
    super().__init__(time_step_spec, action_spec)
    self._server = server
    self._num_actions = int(np.max(action_spec.maximum)) + 1

  def _action(self, time_step, policy_state):
    observation = np.asarray(time_step.observation)
    batched = observation.ndim == len(self.time_step_spec.observation.shape) + 1
    batch = observation if batched else observation[None]
    _, actions = self._server.request('act', np.ascontiguousarray(batch, np.uint8))
    if actions is None or actions.shape != (len(batch),):
      raise ServerError(f'act: expected {len(batch)} actions, got '
                        f'{None if actions is None else list(actions.shape)}')
    if actions.min() < 0 or actions.max() >= self._num_actions:
      raise ServerError(f'act: action {int(actions.max())} outside the {self._num_actions} '
                        'actions of the environment')
    actions = actions.astype(self.action_spec.dtype)
    return policy_step.PolicyStep(actions if batched else actions[0], policy_state, ())
