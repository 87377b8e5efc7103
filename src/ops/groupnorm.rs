//! groupnorm (to be written).
