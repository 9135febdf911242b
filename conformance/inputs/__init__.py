"""Inputs, every value exactly representable in the target format: ``scalars`` for elementwise
clauses, ``rows`` for ops over rows and batches."""
