"""`kubetune-trainer preflight`: check on CPU, before any GPU is used, what would make a run fail.

The token is valid; the base model is readable at its revision (a gated model is named as
such, with where to accept its license); the output repo can be written by the token; every
data source answers; and a rough GPU-memory estimate warns when the run cannot fit the GPU.
It reads the same TrainerConfig as `train`, imports no torch, and writes a PreflightReport
(kubetune.api.contract) to the termination message.
"""

from kubetune_trainer.preflight.run import run_preflight

__all__ = ["run_preflight"]
