//! matmul (to be written).
