r"""Times the PyTorch reference network (../shared/bench/torch_reference.py)
on the same shapes as our benchmark: eager or `torch.compile`, float32 or
bfloat16 autocast, on CPU or CUDA (rhpe_jax.perf.torch_timing).

`experiments.benchmark --compare_torch` runs this file as a script in a fresh
interpreter (which may be another environment's, with torch installed), so
that neither runtime shares a process with the other:

  PYTHONPATH=. python experiments/torch_timing.py \
      --reference=../shared/bench/torch_reference.py \
      --what=train_step --batch=2 --image_size=248 --steps=3 --threads=2

It prints one JSON line. It needs torch and the standard library only (no
absl: hence argparse, whose usage errors are one `error:` line, exit 2);
torch is never a dependency of the project.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from rhpe_jax.perf import torch_timing


class Parser(argparse.ArgumentParser):
  """argparse with the project's usage errors: one `error:` line, exit status 2."""

  def error(self, message: str):
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
  parser = Parser(description=__doc__.splitlines()[0])
  parser.add_argument('--reference', type=pathlib.Path, required=True)
  parser.add_argument('--what', choices=('train_step', 'inference'), required=True)
  parser.add_argument('--batch', type=int, required=True)
  parser.add_argument('--image_size', type=int, required=True)
  parser.add_argument('--steps', type=int, required=True)
  parser.add_argument('--threads', type=int, default=None,
                      help='intra-op threads (default: torch\'s own choice)')
  parser.add_argument('--compile', action='store_true')
  parser.add_argument('--bfloat16', action='store_true')
  args = parser.parse_args(argv)
  try:
    torch_timing.run(args.reference, args.what, args.batch, args.image_size, args.steps,
                     args.threads, compile_model=args.compile, bfloat16=args.bfloat16)
  except FileNotFoundError as error:
    if not str(error).startswith('reference '):
      raise
    print(f'error: --{error}', file=sys.stderr)  # the library names the argument: say the flag
    sys.exit(1)


if __name__ == '__main__':
  main()
