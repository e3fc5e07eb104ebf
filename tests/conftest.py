"""Process-wide test settings, applied before any test module imports torch or Triton."""
import os

# The fused BatchNorm kernels (models/fused_bn.py) are Triton kernels: on a machine without a GPU
# they run in Triton's interpreter, which must be chosen before Triton is first imported.
os.environ.setdefault("TRITON_INTERPRET", "1")
