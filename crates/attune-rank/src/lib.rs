//! attune-rank
