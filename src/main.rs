fn main() -> std::process::ExitCode {
    snnc::cli::main()
}
