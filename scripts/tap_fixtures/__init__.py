"""Record real taps' Singer output (and what their sources hold) as the target's test fixtures."""
