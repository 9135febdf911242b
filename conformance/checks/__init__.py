"""Generic checks, one module per clause kind (or pair of kinds: a value and its derivative);
family checks registered by name in conformance/<family>.py plug into them."""
