//! Pure planning logic.
