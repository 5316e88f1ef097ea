//! tollway-state
