//! Integration tests of vog, one module per area (one test binary, as ripgrep does).

mod util;

mod backend;
mod cli;
mod configs;
mod demo;
mod errors;
mod golden;
mod stored;
