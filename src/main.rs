//! The `sentryops` binary: everything lives in the library; see `cli`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match sentryops::cli::run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
