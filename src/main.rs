use std::process::ExitCode;

fn main() -> ExitCode {
    okta_ciam_operator::cli::main_from_args(std::env::args_os())
}
