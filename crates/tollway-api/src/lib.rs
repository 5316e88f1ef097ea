//! tollway-api
