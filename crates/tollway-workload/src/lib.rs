//! tollway-workload
