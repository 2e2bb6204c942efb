//! Development tasks shared by `cargo xtask` and the end-to-end tests.

pub mod images;
