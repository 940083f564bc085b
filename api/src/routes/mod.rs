pub mod commands;
pub mod ops;
pub mod queries;
