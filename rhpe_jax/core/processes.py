"""Joining the processes of a multi-host run."""
from __future__ import annotations

import jax
from jax.experimental import multihost_utils


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """`jax.distributed.initialize`, then one collective among all processes.

  CPU hosts exchange over gloo, which opens the channel between processes at
  their first collective and gives each 30 s to arrive there. Right after
  `initialize` (which waits for every process) they are in step; soon after
  they part: JAX's persistent compilation cache holds the single-device
  programs of process 0 only, so the others compile the network's
  initialisation while process 0 reads it (23 s apart for the tests' tiny
  network on 2 busy cores, jax 0.12), and the first collective, orbax's
  barrier when the checkpoint directory is made, timed out. Opened here, the
  channel is there to be reused; a process arriving late at an open one
  waits (45 s tried). GPUs and TPUs ignore the gloo setting.
  """
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address, num_processes, process_id)
  multihost_utils.sync_global_devices('rhpe_jax: every process has started')
