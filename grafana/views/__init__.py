"""One module per dashboard; each exposes `dashboard()` returning the SDK builder."""
