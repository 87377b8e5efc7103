//! pool (to be written).
