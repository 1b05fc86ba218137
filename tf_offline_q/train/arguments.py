"""Type checks of gin-configured arguments at the edge, against their annotations.

Gin takes any Python literal, so `train_eval.full_action_space = 'False'` (a
truthy string), `num_train_steps = 120.5` or `batch_size = 'abc'` reach the
code unchecked. `check_types` compares each argument with the function's type
annotation and names the binding:

  train_eval.batch_size must be an int, got 'abc'

Rules: a bool must be True or False (not a string, not 0/1); an int must be an
int (not a bool, not a float); a float may be given as an int; a str must be a
str; Optional[X] also takes None; Sequence[str] is a list or tuple of strings.
Other annotations are not checked.
"""
import collections.abc
import numbers
import typing
from typing import Any, Callable, Mapping, Optional


class ConfigError(ValueError):
  """A configured value of the wrong type (the message names the binding)."""


def _check(expected: Any, value: Any) -> Optional[str]:
  """None when `value` fits `expected`, else the description of `expected`."""
  origin, args = typing.get_origin(expected), typing.get_args(expected)
  if origin is typing.Union:
    if value is None and type(None) in args:
      return None
    options = [a for a in args if a is not type(None)]
    if len(options) == 1:
      problem = _check(options[0], value)
      return None if problem is None else f'{problem} or None'
    return None          # Unions of several types are not checked.
  if expected is bool:
    return None if isinstance(value, bool) else 'a bool (True or False)'
  if expected is int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return None if ok else 'an int'
  if expected is float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return None if ok else 'a number'
  if expected is str:
    return None if isinstance(value, str) else 'a string'
  if origin in (list, tuple, collections.abc.Sequence):
    item = args[0] if args else None
    if not isinstance(value, (list, tuple)):
      return 'a list' + (' of strings' if item is str else '')
    if item is str and not all(isinstance(v, str) for v in value):
      return 'a list of strings'
    return None
  return None


def check_types(function: Callable, arguments: Mapping[str, Any], prefix: str) -> None:
  """Checks `arguments` against `function`'s annotations.

  Args:
    function: the gin-configurable function (its annotations are the types).
    arguments: {name: value} as the function received them.
    prefix: the gin name, e.g. 'train_eval'.
  Raises:
    ConfigError: '`prefix.name` must be an int, got 'abc'' for the first
      argument of the wrong type.
  """
  hints = typing.get_type_hints(function)
  for name, value in arguments.items():
    if name not in hints:
      continue
    problem = _check(hints[name], value)
    if problem is not None:
      raise ConfigError(f'{prefix}.{name} must be {problem}, got {value!r}')
