//! layernorm (to be written).
