//! tollway-datapath
