pub mod billing;
pub mod commands;
pub mod license;
pub mod log;
pub mod ops;
pub mod queries;
pub mod stripe;
pub mod usage;
