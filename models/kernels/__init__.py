"""GPU kernels (Triton) and their runtime: the fused BN -> ReLU [-> max-pool] kernels, the grey first
conv inside them, and the square grouped convs. They change how the networks compute, never what."""
