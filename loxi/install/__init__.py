"""`loxi-plan install` / `uninstall`: put loxi-cni where a runtime finds it, and take it away."""
