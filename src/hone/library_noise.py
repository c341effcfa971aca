"""Lines the ML libraries print while they load that are not the user's business, silenced one by one.

Each is matched by the logger (or warning category) it comes from and a piece of its message, so
everything else those libraries log or warn still reaches the user.
"""

from __future__ import annotations

import logging
import warnings

# (logger, part of the message): why it is noise
NOISY_LOG_LINES = (
    ("torchao", "Failed to load "),  # torchao's C++ extensions built for other Pythons/GPUs; pure-PyTorch paths are used
    ("torchao.kernel.intmm", "Detected no triton"),  # Triton kernels hone does not call
    ("torch.utils._pytree", "is an Enum subclass"),  # torchao registers its enums the deprecated way
    ("bitsandbytes.backends.cpu.ops", "could not verify publisher trust"),  # optional hub kernels, never fetched
)
# (category, regex at the start of the message): warnings raised inside libraries, not by hone's use of them
NOISY_WARNINGS = (
    (FutureWarning, "`is_gradient_checkpointing` is deprecated"),  # transformers, when PEFT asks
)


class _DropNoise(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def silence_library_noise() -> None:
    """Attach the filters (once per process; safe to call again)."""
    for name, fragment in NOISY_LOG_LINES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) and f.fragment == fragment for f in logger.filters):
            logger.addFilter(_DropNoise(fragment))
    for category, message in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
