//! attune-server
