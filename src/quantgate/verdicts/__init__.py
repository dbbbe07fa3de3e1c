"""From measurements to verdicts: statistics (stats, sequential), the gate rules (gates), what a
gate measured (measurement), the judge, and the recorder."""
