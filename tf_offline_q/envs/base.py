"""What the ALE and MinAtar environments share: specs, protocol settings, episode bookkeeping."""
from typing import Dict, Optional

from tf_agents.environments import py_environment


class GameEnvironment(py_environment.PyEnvironment):
  """An unbatched game `PyEnvironment` with the evaluation protocol's settings.

  The constructor checks and keeps the protocol settings. Subclasses set
  `_num_actions`, `_observation_spec` and `_action_spec` in their `__init__`,
  call `_begin_episode` in `_reset`, count `_episode_return`, `_episode_frames`
  and `_episode_steps` while stepping, and call `_end_episode` at a `LAST`
  step. Auto-reset is theirs (the base class check costs ~0.1 ms a step).

  Args:
    game: canonical game name.
    sticky_action_prob: probability of repeating the previous action, in [0, 1].
    max_episode_frames: frame cap per episode (>= 1), or None.
    stack_size: frames per observation (>= 1).
    seed: seed of the first reset (None: entropy).
  """

  def __init__(self, game: str, sticky_action_prob: float,
               max_episode_frames: Optional[int], stack_size: int,
               seed: Optional[int]):
    super().__init__(handle_auto_reset=False)
    if not 0.0 <= sticky_action_prob <= 1.0:
      raise ValueError(
          f'sticky_action_prob must be in [0, 1], got {sticky_action_prob}')
    if stack_size < 1:
      raise ValueError(f'stack_size must be >= 1, got {stack_size}')
    if max_episode_frames is not None and max_episode_frames < 1:
      raise ValueError(
          f'max_episode_frames must be >= 1 or None, got {max_episode_frames}')
    self._game = game
    self._sticky_action_prob = float(sticky_action_prob)
    self._max_episode_frames = (
        int(max_episode_frames) if max_episode_frames is not None else None)
    self._seed = seed
    self._needs_seeding = True
    self._episode_ended = True
    self._episode_return = 0.0
    self._episode_frames = 0
    self._episode_steps = 0
    self._last_episode: Optional[Dict[str, float]] = None
    self._num_episodes = 0

  # ---------------------------------------------------------------- specs
  def observation_spec(self):
    return self._observation_spec

  def action_spec(self):
    return self._action_spec

  # ----------------------------------------------------------- properties
  @property
  def game(self) -> str:
    """Canonical name of the game, e.g. 'Pong' or 'MinAtar-Breakout'."""
    return self._game

  @property
  def num_actions(self) -> int:
    """Size of the action set."""
    return self._num_actions

  @property
  def sticky_action_prob(self) -> float:
    return self._sticky_action_prob

  @property
  def max_episode_frames(self) -> Optional[int]:
    return self._max_episode_frames

  @property
  def episode_return(self) -> float:
    """Raw (unclipped) return of the episode in progress, or just ended."""
    return self._episode_return

  @property
  def episode_frames(self) -> int:
    """Raw frames used by the episode in progress, or just ended."""
    return self._episode_frames

  @property
  def episode_steps(self) -> int:
    """Agent steps taken in the episode in progress, or just ended."""
    return self._episode_steps

  @property
  def last_episode(self) -> Optional[Dict[str, float]]:
    """Last completed episode: {'return', 'frames', 'steps', 'truncated'}."""
    return None if self._last_episode is None else dict(self._last_episode)

  @property
  def num_episodes(self) -> int:
    """Episodes completed since the environment was built."""
    return self._num_episodes

  # ------------------------------------------------------------ episodes
  def _action_index(self, action) -> int:
    """`action` as an int index into the action set; ValueError naming the game if not."""
    try:
      index = int(action)
    except (TypeError, ValueError):
      index = -1
    if not 0 <= index < self._num_actions:
      raise ValueError(f'action must be an integer in [0, {self._num_actions}) for '
                       f'{self._game}, got {action!r}')
    return index

  def _begin_episode(self):
    self._episode_return = 0.0
    self._episode_frames = 0
    self._episode_steps = 0
    self._episode_ended = False

  def _end_episode(self, truncated: bool):
    self._episode_ended = True
    self._num_episodes += 1
    self._last_episode = {
        'return': self._episode_return,
        'frames': self._episode_frames,
        'steps': self._episode_steps,
        'truncated': truncated,
    }

  def seed(self, seed: Optional[int]) -> None:
    """Re-seeds the game (and sticky actions); takes effect at the next `reset()`."""
    self._seed = seed
    self._needs_seeding = True
