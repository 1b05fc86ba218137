"""The action-server protocol: JSON headers and NumPy arrays over a pipe.

The d3rlpy reference runs in a virtual environment of its own (PyTorch,
d3rlpy and the gymnasium it pins), never in the project's. The project's
evaluation loop (`tf_offline_q.eval.evaluation.evaluate_policy`, sticky
actions, epsilon 0.001, frame caps) plays the games; the d3rlpy process is a
server that trains on request and answers "which action for these
observations". This module is the wire format, shared by both sides, and
needs only the standard library and NumPy.

A message is

  8 bytes   big-endian length L of the header
  L bytes   UTF-8 JSON header (an object)
  [payload] if the header has "array": {"dtype": str, "shape": [int, ...]},
            the array's bytes in C order follow (size from dtype and shape)

Requests carry "cmd"; every reply carries "ok" (false with "error": the
server's message, which the client raises). Commands (`Handler` methods):

  hello                 -> {"ok", "observation_shape", "num_actions", "step", ...}
  train {"steps": N}    -> {"ok", "step", "losses": {...}, "seconds"}
  act  + uint8 array [B, H, W, K] -> {"ok"} + int64 array [B]
  save {"path": P} / load {"path": P} -> {"ok", "step"}
  echo + array          -> {"ok"} + the same array (protocol check)
  close                 -> {"ok"}; the server exits

The server's stdout carries the protocol only: `serve` moves whatever else
writes to file descriptor 1 (libraries' log lines) onto stderr.
"""
import json
import os
import struct
import sys
import traceback
from typing import Any, BinaryIO, Dict, Optional, Tuple

import numpy as np

_LENGTH = struct.Struct('>Q')
MAX_HEADER_BYTES = 1 << 20
ALLOWED_DTYPES = ('uint8', 'int32', 'int64', 'float32', 'float64')


class ProtocolError(RuntimeError):
  """A malformed message, a closed pipe, or an error reported by the other side."""


def _read_exactly(stream: BinaryIO, size: int, what: str) -> bytes:
  chunks, left = [], size
  while left:
    chunk = stream.read(left)
    if not chunk:
      raise ProtocolError(f'pipe closed while reading {what} ({size - left}/{size} bytes)')
    chunks.append(chunk)
    left -= len(chunk)
  return b''.join(chunks)


def write_message(stream: BinaryIO, header: Dict[str, Any],
                  array: Optional[np.ndarray] = None) -> None:
  """Writes one message (header, then the array's bytes if given) and flushes."""
  header = dict(header)
  payload = b''
  if array is not None:
    array = np.ascontiguousarray(array)
    if array.dtype.name not in ALLOWED_DTYPES:
      raise ProtocolError(f'array dtype {array.dtype} not in {ALLOWED_DTYPES}')
    header['array'] = {'dtype': array.dtype.name, 'shape': list(array.shape)}
    payload = array.tobytes()
  data = json.dumps(header).encode('utf-8')
  stream.write(_LENGTH.pack(len(data)) + data + payload)
  stream.flush()


def read_message(stream: BinaryIO) -> Tuple[Dict[str, Any], Optional[np.ndarray]]:
  """Reads one message: (header, array or None). ProtocolError if malformed or closed."""
  (length,) = _LENGTH.unpack(_read_exactly(stream, _LENGTH.size, 'a message length'))
  if length > MAX_HEADER_BYTES:
    raise ProtocolError(f'header of {length} bytes (more than {MAX_HEADER_BYTES}): '
                        'the stream is not this protocol (stray output on stdout?)')
  try:
    header = json.loads(_read_exactly(stream, length, 'a header').decode('utf-8'))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ProtocolError(f'header is not JSON: {e}') from e
  if not isinstance(header, dict):
    raise ProtocolError(f'header must be a JSON object, got {type(header).__name__}')
  spec = header.pop('array', None)
  if spec is None:
    return header, None
  dtype, shape = spec.get('dtype'), spec.get('shape')
  if dtype not in ALLOWED_DTYPES or not isinstance(shape, list) or any(
      not isinstance(d, int) or d < 0 for d in shape):
    raise ProtocolError(f'bad array spec {spec!r}')
  size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
  data = _read_exactly(stream, size, f'a {dtype} {shape} array')
  return header, np.frombuffer(data, dtype=dtype).reshape(shape)


class Handler:
  """What a server does; `serve` calls `cmd_{name}(header, array)`.

  Each returns (reply header, reply array or None). Subclasses: the d3rlpy
  trainer (`server.py`) and the tests' fake policy.
  """

  def cmd_echo(self, header, array):
    del header
    return {}, array

  def cmd_close(self, header, array):
    del header, array
    return {}, None


def protocol_stdout() -> BinaryIO:
  """A private binary stream on the process's stdout; fd 1 then points at stderr.

  Call before importing chatty libraries: their prints and logs go to stderr
  and cannot corrupt the protocol.
  """
  out = os.fdopen(os.dup(sys.stdout.fileno()), 'wb')
  sys.stdout.flush()
  os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
  return out


def serve(handler: Handler, stdin: Optional[BinaryIO] = None,
          stdout: Optional[BinaryIO] = None) -> None:
  """Answers requests until "close" or the end of stdin.

  An exception in a command is sent back as {"ok": false, "error": ...} and
  the server goes on (the client decides); a malformed message ends it.
  """
  stdin = stdin if stdin is not None else sys.stdin.buffer
  stdout = stdout if stdout is not None else protocol_stdout()
  while True:
    try:
      header, array = read_message(stdin)
    except ProtocolError as e:
      if 'pipe closed while reading a message length (0/' in str(e):
        return   # The client went away between messages.
      raise
    cmd = header.get('cmd')
    method = getattr(handler, f'cmd_{cmd}', None) if isinstance(cmd, str) else None
    if method is None:
      write_message(stdout, {'ok': False, 'error': f'unknown command {cmd!r}'})
      continue
    try:
      reply, out = method(header, array)
    except Exception as e:  # pylint: disable=broad-except
      traceback.print_exc(file=sys.stderr)
      write_message(stdout, {'ok': False, 'error': f'{type(e).__name__}: {e}'})
      continue
    write_message(stdout, dict(reply, ok=True), out)
    if cmd == 'close':
      return
