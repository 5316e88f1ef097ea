//! tollway-abi
