"""Parity fixture generation for foley's candle ports, one module per model group."""
