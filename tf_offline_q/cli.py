"""What the `launch/` scripts share: bad input ends in one clear line.

  from tf_offline_q import cli
  def main(argv):
    with cli.user_errors('reverb_server.py'):
      ...  # a DataError / ValueError / OSError here prints
           # "reverb_server.py: error: <message>" and exits with status 1

The messages of these errors already name the file, field or address at fault
and what to do; a traceback would only bury them. Programming errors (any
other exception) keep their traceback.
"""
import contextlib
import sys
from typing import Iterator, Tuple, Type

# DataError (tf_offline_q.data) is a ValueError; ConnectionError, TimeoutError
# and FileNotFoundError are OSErrors.
USER_ERRORS: Tuple[Type[BaseException], ...] = (ValueError, KeyError, OSError)


def error_message(prog: str, error: BaseException) -> str:
  """'PROG: error: MESSAGE': a KeyError's message without its quotes, and
  without the line gin appends to errors raised in a configurable."""
  text = error.args[0] if isinstance(error, KeyError) and error.args else error
  text = str(text).split('\n  In call to configurable')[0]
  return f'{prog}: error: {text}'


@contextlib.contextmanager
def user_errors(prog: str,
                errors: Tuple[Type[BaseException], ...] = USER_ERRORS
                ) -> Iterator[None]:
  """Turns `errors` raised inside into `sys.exit('PROG: error: MESSAGE')`."""
  try:
    yield
  except errors as e:  # pylint: disable=catching-non-exception
    sys.exit(error_message(prog, e))
