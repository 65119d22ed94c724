//! Integration tests of vog, one module per area (one test binary, as ripgrep does).

mod util;

mod cli;
mod configs;
mod conformance;
mod demo;
mod errors;
mod evaluate;
mod flags;
mod golden;
mod hostile;
mod layout;
mod panel;
mod plugins;
mod report;
mod reproduce;
mod resume;
mod review_load;
mod serve;
mod shards;
mod store;
mod stored;
mod work_order;
