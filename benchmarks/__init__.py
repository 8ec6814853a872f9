"""cryofield's benchmark suites (verification, performance, peers); run them with ``cryofield bench`` (README.md)."""
