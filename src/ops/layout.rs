//! layout (to be written).
