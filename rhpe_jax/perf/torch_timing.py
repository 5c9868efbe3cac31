"""The PyTorch reference network (../shared/bench/torch_reference.py) timed on
the benchmark's shapes: eager or `torch.compile`, float32 or bfloat16
autocast, on CPU or CUDA.

It imports only the standard library and torch (never a dependency of the
project), so that `experiments/torch_timing.py` runs it in another
environment's interpreter, one with torch (`experiments.benchmark
--compare_torch`), in a process of its own.
"""
from __future__ import annotations

import importlib.util
import json
import pathlib
import statistics
import time


def load_reference(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location('torch_reference', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def time_reference(path: pathlib.Path, what: str, batch: int, image_size: int, steps: int,
                   compile_model: bool = False, bfloat16: bool = False) -> dict:
  """Median seconds of a training step (SGD, momentum 0.95, the reference's
  loss) or of an eval-mode forward pass, after warm-up."""
  import torch  # pylint: disable=g-import-not-at-top
  reference = load_reference(path)
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.manual_seed(0)
  model = reference.RecurrentPose().to(device)
  if device == 'cuda':
    model = model.to(memory_format=torch.channels_last)
  runner = torch.compile(model) if compile_model else model
  x = torch.zeros(batch, 3, image_size, image_size, device=device)
  autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bfloat16)
  opt = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.95)

  def train_step():
    opt.zero_grad(set_to_none=True)
    with autocast:
      loss = sum((o.float() ** 2).mean() for pair in runner(x) for o in pair)
    loss.backward()
    opt.step()

  def forward():
    with torch.no_grad(), autocast:
      runner(x)

  if what == 'train_step':
    model.train()
    fn = train_step
  else:
    model.eval()
    fn = forward
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
  for _ in range(3 if compile_model else 1):
    fn()
  sync()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    sync()
    times.append(time.perf_counter() - start)
  step_time = statistics.median(times)
  return {'what': f'torch_{what}', 'batch': batch, 'image_size': image_size,
          'device': device, 'compiled': compile_model, 'bfloat16': bfloat16,
          'step_time_s': round(step_time, 4), 'images_per_s': round(batch / step_time, 3)}


def run(reference: pathlib.Path, what: str, batch: int, image_size: int, steps: int,
        threads: int | None, compile_model: bool, bfloat16: bool) -> dict:
  """`time_reference` on `threads` intra-op threads (None: torch's choice), printed as one JSON line."""
  import torch  # pylint: disable=g-import-not-at-top
  if not pathlib.Path(reference).is_file():
    raise FileNotFoundError(f'reference {reference} does not exist')
  if threads:
    torch.set_num_threads(threads)
  result = time_reference(reference, what, batch, image_size, steps,
                          compile_model=compile_model, bfloat16=bfloat16)
  result.update(threads=torch.get_num_threads(), torch_version=torch.__version__)
  print(json.dumps(result), flush=True)
  return result
