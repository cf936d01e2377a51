"""Every training method, registered on import (training.method_registry). One line per method module."""

import training.methods.ada  # noqa: F401  ada, adalinear
import training.contrastive.hooks  # noqa: F401  insgen, fakeclr, contragan
import training.methods.lecam  # noqa: F401  lecam
import training.methods.diffaugment  # noqa: F401  diffaugment
import training.methods.apa  # noqa: F401  apa
