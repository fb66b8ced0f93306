//! attune-core
