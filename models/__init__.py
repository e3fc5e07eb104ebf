"""The paper's networks in PyTorch: extractor, heads, sub-networks, the packed multi-model network."""
