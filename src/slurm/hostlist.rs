//! Slurm hostlist expression expansion and compression.
