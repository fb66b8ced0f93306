//! attune-engine
