"""ffnspec: a property-tested reference specification and conformance suite for the
numerics of deep feedforward networks (Goodfellow, Bengio & Courville, ch. 6).

    ffnspec.spec         the clauses (data)
    ffnspec.reference    mpmath reference, correct rounding, the ULP measure
    ffnspec.conformance  the pytest plugin and checks
    ffnspec.adapters     backends
"""
__version__ = "0.1.0"
