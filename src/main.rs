use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    okta_ciam_operator::cli::main(okta_ciam_operator::cli::Cli::parse())
}
