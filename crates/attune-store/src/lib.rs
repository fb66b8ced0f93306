//! attune-store
