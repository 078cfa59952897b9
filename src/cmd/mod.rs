//! One module per subcommand.
pub mod bench;
pub mod generate;
pub mod models;
pub mod mux;
pub mod probe;
pub mod serve;
