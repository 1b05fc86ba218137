"""The console helpers: progress lines and the third-party filters."""
import io
import subprocess
import sys
import warnings

from tf_offline_q import console
from tf_offline_q import experiments
from tf_offline_q import progress


def test_progress_line_has_count_rate_and_eta(monkeypatch):
  clock = iter([0.0, 10.0, 20.0, 20.0])
  monkeypatch.setattr(progress.time, 'perf_counter', lambda: next(clock))
  out = io.StringIO()
  p = progress.Progress('Generating', total=400, unit='steps', interval=5, stream=out)
  p.update(100)   # t = 10 s: 100 steps at 10 steps/s, 300 left -> ETA 0:30
  assert out.getvalue().strip() == 'Generating: 100/400 steps (25%)  10.0 steps/s  ETA 0:30'
  p.update(100)   # t = 20 s
  elapsed = p.done(', 7 episodes')
  assert elapsed == 20.0
  assert out.getvalue().splitlines()[-1] == ('Generating: done, 200 steps in 0:20 '
                                             '(10.0 steps/s), 7 episodes')


def test_format_duration():
  assert progress.format_duration(6.4) == '0:06'
  assert progress.format_duration(400) == '6:40'
  assert progress.format_duration(3903) == '1:05:03'
  assert progress.format_duration(float('inf')) == '?'


def test_reverb_info_lines_are_recognised_and_errors_are_not():
  assert console.is_reverb_info(
      '[reverb/cc/platform/default/server.cc:71] Started replay server on port 43853\n')
  assert console.is_reverb_info('[reverb/cc/reverb_service_impl.cc:168] Stored checkpoint to '
                                '/tmp/x/reverb/2026-11-29T23:30:25.205354348+00:00')
  assert console.is_reverb_info('[reverb/cc/platform/tfrecord_checkpointer.cc:162]  '
                                'Initializing TFRecordCheckpointer in /tmp/x.')
  assert not console.is_reverb_info('[reverb/cc/platform/tfrecord_checkpointer.cc:301] '
                                    'Check failed: chunks.tfrecord is truncated')
  assert not console.is_reverb_info('step 200/1200  5.33 steps/s  ETA 3.1 min')


def test_structured_value_warning_is_filtered_and_others_pass():
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    console.quiet_third_party()
    warnings.warn('Encoding a StructuredValue with type tfp.distributions.Categorical_ACTTypeSpec;'
                  ' loading this StructuredValue will require ...', UserWarning)
    warnings.warn('something else', UserWarning)
  assert [str(w.message) for w in caught] == ['something else']


def test_relayed_child_output_drops_only_reverb_info(capsys):
  code = ('import sys\n'
          'print("[reverb/cc/platform/default/server.cc:71] Started replay server on port 1")\n'
          'print("our progress line")\n'
          'print("[reverb/cc/chunk_store.cc:9] a Reverb error", file=sys.stderr)\n')
  failed = experiments.run_scripts([('job', ['-c', code], None)], parallel=1)
  out = capsys.readouterr().out
  assert failed == []
  assert '[job] our progress line' in out
  assert '[job] [reverb/cc/chunk_store.cc:9] a Reverb error' in out
  assert '[job] [reverb/cc/platform/default/server.cc:71]' not in out


def test_tensorflow_import_prints_nothing():
  """No CUDA-factory errors (tensorflow-cpu) and no gym / Farama notices."""
  proc = subprocess.run(
      [sys.executable, '-c', 'import tensorflow, tf_agents.environments, gymnasium_robotics'],
      capture_output=True, text=True, check=True,
      env={'TF_CPP_MIN_LOG_LEVEL': '2', 'PATH': '/usr/bin:/bin'})
  assert proc.stdout == ''
  assert proc.stderr == ''
