//! Running the `attune` binary as a child process in tests, and driving a real browser.

pub mod webdriver;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

/// `attune` with the given arguments, quiet logs; the caller adds what its test needs.
pub fn attune(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_attune"));
    command.args(args).env("RUST_LOG", "warn");
    command
}

/// A child process killed (and reaped) when dropped, so a failing test leaves no server behind
/// holding its output open.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `attune serve …` (listening on port 0) and waits for the line that names its address:
/// returns the child and `http://127.0.0.1:PORT`.
pub fn spawn_serve(command: &mut Command) -> (Child, String) {
    let mut child = command.stdout(Stdio::piped()).spawn().expect("spawn attune serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the address line");
    let address = line.trim().strip_prefix("attune listening on ").expect("address line").to_owned();
    (child, address)
}
