//! tollway-lab
