"""D4RL's maze2d data procedure: a planner over the maze grid and a PD controller to its waypoints.

D4RL made the maze2d datasets (Fu et al., 2020) with a planner over the maze's
grid of cells and a PD controller driving the point mass to the planned
waypoints of a randomly chosen goal; on reaching it a new goal is drawn and the
drive continues. We do the same on Gymnasium-Robotics' `PointMaze_*-v3`:

  * `MazePlanner`: breadth-first search over the free cells (4-connected) from
    the goal cell; `next_waypoint(position, goal)` is the centre of the next
    cell on a shortest path, or the goal itself once in the goal's cell
    (D4RL used Q-iteration on the same grid, which gives the same shortest
    paths).
  * `WaypointController`: action = clip(p_gain * (waypoint - position) -
    d_gain * velocity, -1, 1), D4RL's gains (p 10, d 1), optionally plus
    Gaussian noise (`action_noise`, D4RL: 0.5) clipped again.

The controller reads everything from the flat observation of
`tf_offline_q.envs.continuous` (x, y, vx, vy, goal_x, goal_y), so it is a
policy over the same observations a learner sees.
"""
import collections
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

Cell = Tuple[int, int]


class MazePlanner:
  """Shortest paths over a maze grid.

  Args:
    maze_map: rows of cells, 1 = wall, anything else (0, 'g', 'r', 'c') free
      (gymnasium-robotics' `maze_map`).
    scaling: cell side length (`maze_size_scaling`, 1 for PointMaze).
  """

  def __init__(self, maze_map: Sequence[Sequence], scaling: float = 1.0):
    self.grid = np.array([[1 if c == 1 else 0 for c in row] for row in maze_map],
                         np.int64)
    self.scaling = float(scaling)
    rows, cols = self.grid.shape
    self._x_center = cols / 2 * self.scaling
    self._y_center = rows / 2 * self.scaling
    self._distances: Dict[Cell, np.ndarray] = {}

  @classmethod
  def for_env(cls, env) -> 'MazePlanner':
    """The planner of a `ContinuousEnvironment` (or gymnasium env) of a PointMaze."""
    gym_env = getattr(env, 'gym_env', env)
    maze = gym_env.unwrapped.maze
    return cls(maze.maze_map, maze.maze_size_scaling)

  @property
  def free_cells(self) -> List[Cell]:
    return [tuple(int(v) for v in c) for c in np.argwhere(self.grid == 0)]

  def cell(self, xy: Sequence[float]) -> Cell:
    """(row, col) of the cell containing `xy` (gymnasium-robotics' convention)."""
    row = math.floor((self._y_center - xy[1]) / self.scaling)
    col = math.floor((xy[0] + self._x_center) / self.scaling)
    return int(row), int(col)

  def center(self, cell: Cell) -> np.ndarray:
    """x, y of the centre of `cell`."""
    return np.array([(cell[1] + 0.5) * self.scaling - self._x_center,
                     self._y_center - (cell[0] + 0.5) * self.scaling])

  def _is_free(self, cell: Cell) -> bool:
    rows, cols = self.grid.shape
    return 0 <= cell[0] < rows and 0 <= cell[1] < cols and self.grid[cell] == 0

  def distances(self, goal: Cell) -> np.ndarray:
    """BFS steps from every cell to `goal` (-1: wall or unreachable)."""
    if goal not in self._distances:
      if not self._is_free(goal):
        raise ValueError(f'goal cell {goal} is a wall or outside the maze')
      dist = np.full(self.grid.shape, -1, np.int64)
      dist[goal] = 0
      queue = collections.deque([goal])
      while queue:
        r, c = queue.popleft()
        for n in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
          if self._is_free(n) and dist[n] < 0:
            dist[n] = dist[r, c] + 1
            queue.append(n)
      self._distances[goal] = dist
    return self._distances[goal]

  def path(self, start: Cell, goal: Cell) -> List[Cell]:
    """Cells of a shortest path from `start` to `goal`, both included."""
    dist = self.distances(goal)
    if dist[start] < 0:
      raise ValueError(f'cell {start} cannot reach goal cell {goal}')
    cells = [start]
    while cells[-1] != goal:
      cells.append(self.next_cell(cells[-1], goal))
    return cells

  def next_cell(self, cell: Cell, goal: Cell) -> Cell:
    """The neighbour of `cell` one step closer to `goal` (`cell` if it is the goal)."""
    dist = self.distances(goal)
    if cell == goal:
      return cell
    r, c = cell
    best, best_d = cell, None
    for n in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
      if self._is_free(n) and dist[n] >= 0 and (best_d is None or dist[n] < best_d):
        best, best_d = n, dist[n]
    if best_d is None:
      raise ValueError(f'cell {cell} cannot reach goal cell {goal}')
    return best

  def next_waypoint(self, position: Sequence[float],
                    goal: Sequence[float]) -> np.ndarray:
    """Where to drive next: the next cell's centre, or `goal` in the goal cell."""
    here, goal_cell = self.cell(position), self.cell(goal)
    if here == goal_cell:
      return np.asarray(goal, np.float64)
    if not self._is_free(here):  # Numerically inside a wall: nearest free cell.
      here = min(self.free_cells,
                 key=lambda c: np.linalg.norm(self.center(c) - position))
      if here == goal_cell:
        return np.asarray(goal, np.float64)
    return self.center(self.next_cell(here, goal_cell))


class WaypointController:
  """PD control to the planner's waypoints (module docstring).

  Args:
    planner: the maze's `MazePlanner`.
    p_gain, d_gain: action = p_gain * (waypoint - position) - d_gain * velocity.
    action_noise: standard deviation of Gaussian noise added to the action.
    rng: numpy Generator for the noise.
  """

  def __init__(self, planner: MazePlanner, p_gain: float = 10.0,
               d_gain: float = 1.0, action_noise: float = 0.0,
               rng: Optional[np.random.Generator] = None):
    self.planner = planner
    self.p_gain = float(p_gain)
    self.d_gain = float(d_gain)
    self.action_noise = float(action_noise)
    self.rng = rng if rng is not None else np.random.default_rng()

  def __call__(self, observation: np.ndarray) -> np.ndarray:
    """float32 [2] action in [-1, 1] for a flat maze observation [6]."""
    position, velocity, goal = (observation[0:2], observation[2:4],
                                observation[4:6])
    waypoint = self.planner.next_waypoint(position, goal)
    action = self.p_gain * (waypoint - position) - self.d_gain * velocity
    action = np.clip(action, -1.0, 1.0)
    if self.action_noise > 0:
      action = np.clip(action + self.action_noise * self.rng.standard_normal(2),
                       -1.0, 1.0)
    return action.astype(np.float32)


class GoalRelay:
  """D4RL's goal-to-goal drive on an evaluation-style PointMaze (`reset_target=False`).

  D4RL's maze2d generator kept one target until its controller reached it
  (within `solve_thresh`, 0.1), then drew a new one; its sparse reward was 1
  on every step within 0.5 of the current target. On Gymnasium-Robotics'
  PointMaze with `reset_target=False` the environment already rewards every
  step within 0.45 of the goal, as the evaluation environment does; this
  relay draws the next goal (`generate_target_goal` + position noise, the
  environment's own random stream, so a seed fixes the sequence) once the
  point is within `threshold` of the goal. Rewards in the data are therefore
  in the same units as evaluation returns (steps at the goal).

  Called with each `TimeStep` a rollout receives; returns it with the new goal
  in the observation's goal fields (4:6) when the goal was switched.
  """

  def __init__(self, env, threshold: float = 0.1):
    self.env = env
    self.threshold = float(threshold)
    self.num_goals_reached = 0

  def __call__(self, time_step):
    if time_step.is_last():
      return time_step
    observation = time_step.observation
    maze_env = self.env.gym_env.unwrapped
    if np.linalg.norm(observation[0:2] - maze_env.goal) > self.threshold:
      return time_step
    self.num_goals_reached += 1
    position = np.asarray(observation[0:2], np.float64)
    goal = maze_env.goal
    while np.linalg.norm(position - goal) <= 0.45:
      goal = maze_env.add_xy_position_noise(maze_env.generate_target_goal())
    maze_env.goal = goal
    maze_env.update_target_site_pos()
    observation = np.array(observation, copy=True)
    observation[4:6] = goal
    return time_step._replace(observation=observation)
