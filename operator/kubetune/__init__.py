"""kubetune: fine-tune language models on your own Kubernetes GPUs.

This package is the operator, the CLI and the API models shared with the trainer.
It must stay light: nothing imported from here may pull in torch or transformers.
"""

__version__ = "0.1.0"
