"""The CRI tier: a private containerd with its CRI plugin, driven over gRPC as kubelet drives it."""
