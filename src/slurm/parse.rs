//! Parsers for Slurm 22.05 output.
