//! `vog`: find the examples a model finds hard, with Variance of Gradients.

use std::process::ExitCode;

fn main() -> ExitCode {
    vog::tune_allocator();
    ExitCode::from(vog::main_with(std::env::args_os(), Vec::new()))
}
