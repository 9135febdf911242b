"""Inputs, every value exactly representable in the target format: ``scalars`` for elementwise
clauses and structured problems built from drawn values, ``rows`` for ops over rows and batches."""
