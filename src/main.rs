fn main() -> std::process::ExitCode {
    iqs::cli::run()
}
