//! One module per subcommand.
pub mod mux;
pub mod probe;
pub mod serve;
